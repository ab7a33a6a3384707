"""Every kind of bad input: exit 3 (or 4 for the environment), one line naming the file and the field."""

import textwrap

import pytest

from tests.cli.conftest import assert_one_line_error

GOOD = """\
name: t
models: [llama3:debug]
device: cpu
scenario: {prompt_tokens: 8, output_tokens: 3, batch_sizes: [1]}
timing: {warmup: 0, repeats: 1}
"""


def write(tmp_path, text):
    p = tmp_path / "w.yaml"
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize(
    "text, needles",
    [
        ("name: t\nmodels: [llama3:debug\n", ["broken YAML", "line"]),
        (GOOD + "colour: blue\n", ["colour", "unknown key"]),
        # every mistake on the one line, not the first and a count
        (GOOD + "colour: blue\nflavour: red\n", ["colour: unknown key; flavour: unknown key"]),
        (GOOD.replace("llama3:debug", "mixtrall:8x7b"), ["models[0]", "unknown model 'mixtrall:8x7b'", "did you mean", "mixtral:8x7b"]),
        (GOOD.replace("llama3:debug", "llama3:7b"), ["models[0]", "did you mean"]),
        (GOOD + "parallel: {world_size: 4, expert: 3}\n", ["parallel", "expert×tensor (3×1) must divide world_size (4)"]),
        (GOOD.replace("prompt_tokens: 8", "prompt_tokens: -8"), ["scenario.prompt_tokens", "greater than or equal to 1"]),
        (GOOD.replace("batch_sizes: [1]", "batch_sizes: [0]"), ["scenario.batch_sizes.0"]),
        ("- just\n- a list\n", ["must be a YAML mapping"]),
        (GOOD.replace("device: cpu", "device: tpu"), ["device"]),
        (GOOD + "routing: hot\n", ["routing"]),
        (GOOD + "hardware: h100_sx\n", ["hardware", "unknown hardware 'h100_sx'", "did you mean"]),
        (GOOD.replace("models: [llama3:debug]", "models: [{name: llama3:debug, layers: 10}]"),
         ["models[0]", "layers 10 but llama3:debug has 4"]),
        (GOOD.replace("repeats: 1}", "repeats: 1, schedule: interleaved}") + "profile: true\n",
         ["timing.schedule: interleaved needs a single process without profile: true"]),
        # YAML types its scalars: a boolean or a quoted number is a mistake, not a count
        (GOOD.replace("prompt_tokens: 8", "prompt_tokens: true"), ["scenario.prompt_tokens", "valid integer"]),
        (GOOD.replace("repeats: 1}", "repeats: '1'}"), ["timing.repeats", "valid integer"]),
        # what run would refuse only after building the model, refused first (validate included)
        (GOOD.replace("llama3:debug", "mixtral:debug") + "routing: hot:99\n",
         ["routing 'hot:99': expert 99 does not exist in mixtral:debug"]),
        (GOOD + "hardware: h100_sxm\nprice: {tier: rentl}\n", ["hardware", "has no price tier 'rentl'"]),
        # a CPU run charged an H100's price, bandwidth and power: refused before it runs
        (GOOD + "hardware: h100_sxm\n", ["hardware: h100_sxm is a GPU but device is cpu"]),
        (GOOD.replace("llama3:debug", "mixtral:debug") + "parallel: {world_size: 3, expert: 3}\n",
         ["parallel.expert: 3 does not divide the 8 experts of mixtral:debug"]),
        # sizes no machine holds: named with what would fit (the layers were blamed), by validate too
        (GOOD.replace("batch_sizes: [1]", "batch_sizes: [1000000000]"),
         ["models[0]: llama3:debug needs", "batch size 1000000000 does not fit: the largest that fits is"]),
        (GOOD.replace("prompt_tokens: 8", "prompt_tokens: 1000000000000"),
         ["models[0]", "1000000000003 tokens per sequence (prompt + output) do not fit: at batch size 1 at most"]),
        (GOOD + "price: {usd_per_gpu_hour: .inf}\n", ["price.usd_per_gpu_hour: Input should be a finite number"]),
    ],
)
def test_bad_workload_exits_3_in_one_line(cli, tmp_path, text, needles):
    p = write(tmp_path, text)
    for verb in ("validate", "run"):
        proc = cli(verb, str(p))
        assert_one_line_error(proc, 3, str(p), *needles)


def test_unreadable_and_missing_file(cli, tmp_path):
    assert_one_line_error(cli("validate", str(tmp_path / "nope.yaml")), 3, "nope.yaml", "no such workload file")
    p = write(tmp_path, GOOD)
    p.write_bytes(b"\xff\xfe\x00bad")
    assert_one_line_error(cli("validate", str(p)), 3, str(p), "cannot read")
    d = tmp_path / "dir.yaml"
    d.mkdir()
    assert_one_line_error(cli("run", str(d)), 3, "dir.yaml")


def test_cuda_without_gpu_exits_4(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = cli("run", str(write(tmp_path, GOOD)), "--device", "cuda", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, 4, "no CUDA GPU")


def test_usage_error_exits_2(cli):
    proc = cli("run", "--device", "tpu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = cli("ls", "bogus")
    assert_one_line_error(proc, 2, "usage error: Invalid value for 'what': 'bogus' is not one of 'models'")
    assert "\t" not in proc.stderr and "Value error" not in proc.stderr


def test_unknown_hardware_and_price_tier(cli, tmp_path):
    proc = cli("run", str(write(tmp_path, GOOD + "hardware: h100_sx\n")), "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, 3, "unknown hardware 'h100_sx'", "did you mean")


def test_a_gpu_named_where_auto_finds_none_is_the_environment(cli, tmp_path):
    """device auto on a machine without a GPU runs on the CPU: a GPU's catalog entry would price and roof it."""
    proc = cli("run", str(write(tmp_path, GOOD.replace("device: cpu", "device: auto") + "hardware: h100_sxm\n")),
               "--out", str(tmp_path / "r"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert_one_line_error(proc, 4, "hardware: h100_sxm is a GPU, but this machine has none")
    assert not any((tmp_path / "r").glob("*.json"))


def test_corrupt_results_file_is_one_line(cli, tmp_path):
    from moebench.errors import BadInput
    from moebench.results import load_result

    p = tmp_path / "r.json"
    p.write_text('{"schema_version": 1, "complete": tr')
    with pytest.raises(BadInput, match="corrupt results file"):
        load_result(p)


def test_yaml_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    """PyYAML alone reads `25e-2` as a string (YAML 1.1 floats need a dot); the strict models would refuse it."""
    from moebench.workload import load_workload

    wl = load_workload(write(tmp_path, GOOD + "price: {usd_per_gpu_hour: 25e-2}\nparallel: {collective_timeout_s: 1e2}\n"))
    assert wl.price.usd_per_gpu_hour == 0.25 and wl.parallel.collective_timeout_s == 100.0
    assert load_workload(write(tmp_path, GOOD.replace("llama3:debug", "mixtral:debug") + "routing: zipf:1\n")).routing == "zipf:1"


@pytest.mark.parametrize("args, code, needle", [
    # one rule: a value that parses but is wrong is bad input (3), as in a workload; `--price -3` was a usage error
    (["project", "--model", "mixtral:8x7b", "--price", "-3"], 3, "--price must be a finite number ≥ 0, got -3.0"),
    (["project", "--model", "mixtral:8x7b", "--price", "inf"], 3, "--price must be a finite number ≥ 0, got inf"),
    (["project", "--model", "mixtral:8x7b", "--price", "nan"], 3, "--price must be a finite number ≥ 0, got nan"),
    (["project", "--model", "mixtral:8x7b", "--prompt", "0"], 3, "--prompt must be ≥ 1, got 0"),
    (["project", "--model", "mixtral:8x7b", "--max-gpus", "0"], 3, "--max-gpus must be ≥ 1, got 0"),
    (["project", "--model", "mixtral:8x7b", "--batch", "0"], 3, "--batch"),
    (["run", "workloads/quickstart.yaml", "--repeats", "0"], 3, "--repeats must be ≥ 1, got 0"),
    # a command line that does not parse stays a usage error
    (["project", "--model", "mixtral:8x7b", "--price", "abc"], 2, "--price"),
    (["run", "workloads/quickstart.yaml", "--repeats", "two"], 2, "--repeats"),
])
def test_a_wrong_option_value_is_bad_input_and_an_unparsable_one_usage(cli, args, code, needle):
    assert_one_line_error(cli(*args), code, needle)
