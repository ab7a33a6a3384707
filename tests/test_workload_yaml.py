"""Reading a workload file: whatever the bytes, the result is a workload or one BadInput line (exit 3), never an
internal error, a hang or memory exhaustion; duplicate keys and non-finite numbers are refused."""

import os
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moebench.errors import BadInput
from moebench.workload import MAX_YAML_BYTES, load_workload, read_yaml
from tests.cli.conftest import assert_one_line_error, moebench as cli_run
from tests.cli.test_bad_input import GOOD


def _bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion laughs": (_bomb(), "aliases are expanded"),
    "alias cycle": ("a: &a [*a]\n", "refers to a node that contains it"),
    "deep nesting": ("[" * 5000 + "]" * 5000 + "\n", "nested"),
    "deep mapping": ("name: " + "{a: " * 100 + "1" + "}" * 100 + "\n", "nested more than 64 levels"),
    "python tag": ("name: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
    "huge int": (GOOD + "seed: " + "9" * 6000 + "\n", "broken YAML"),
    "bad timestamp": ("name: !!timestamp 2001-13-45\n", "broken YAML"),
    "empty timestamp": ("!!timestamp\n", "broken YAML: a value it cannot build"),  # found by the fuzzer below
    "binary value": ("name: !!binary '%%%'\n", "name: Input should be a valid string"),
    "two documents": ("a: 1\n---\nb: 2\n", "another document"),
    "unhashable key": ("? [a, b]\n: 1\n", "broken YAML"),
    "duplicate key": (GOOD + "device: cuda\n", "duplicate key 'device' (first at line 3)"),
    "duplicate nested key": (GOOD.replace("warmup: 0,", "warmup: 0, warmup: 1,"), "duplicate key 'warmup'"),
    "infinite price": (GOOD + "price: {usd_per_gpu_hour: .inf}\n", "price.usd_per_gpu_hour: Input should be a finite"),
    "a timeout past a day": (GOOD + "parallel: {collective_timeout_s: 1e15}\n", "parallel.collective_timeout_s"),
    "nan timeout": (GOOD + "parallel: {collective_timeout_s: .nan}\n", "parallel.collective_timeout_s"),
    # the same record twice: compare and the gate would show one and hide the other
    "a model twice": (GOOD.replace("[llama3:debug]", "[llama3:debug, {name: 'llama3:debug', layers: 1}]"),
                      "models[1] repeats models[0] (llama3:debug)"),
    "a batch size twice": (GOOD.replace("batch_sizes: [1]", "batch_sizes: [1, 2, 1]"), "batch size 1 given twice"),
    "infinite score": (GOOD + "intelligence: {score: .inf, version: v9, index: x}\n", "intelligence.score"),
}


@pytest.mark.parametrize("text, needle", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_document_is_one_line_exit_3(tmp_path, text, needle):
    p = tmp_path / "w.yaml"
    p.write_text(text)
    assert_one_line_error(cli_run("validate", str(p)), 3, str(p), needle)


def test_a_merge_may_still_override_a_key():
    doc = read_yaml("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\n")
    assert doc["use"] == {"x": 1, "y": 3}


@pytest.mark.parametrize("make, needle", [
    (lambda d: "/dev/zero", "not a regular file"),
    (lambda d: (os.mkfifo(d / "fifo.yaml"), d / "fifo.yaml")[1], "not a regular file"),
    (lambda d: d, "a folder"),
    (lambda d: (d / "big.yaml").write_text("#" * (MAX_YAML_BYTES + 1)) and d / "big.yaml", "more than a workload file"),
    (lambda d: (d / "bin.yaml").write_bytes(bytes(range(256))) and d / "bin.yaml", "not UTF-8"),
])
def test_only_a_small_regular_text_file_is_read(tmp_path, make, needle):
    # /dev/zero was a MemoryError (exit 70) and a FIFO a hang; the timeout makes a hang a failure here
    assert_one_line_error(cli_run("validate", str(make(tmp_path)), timeout=60), 3, needle)


def _load(tmp_path, text: str) -> None:
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_workload(p)
    except BadInput as exc:
        assert "\n" not in str(exc).strip()


SNIPPETS = ["&a", "*a", "!!python/name:os.system", "!!binary", "!!timestamp", "!!set", "!!omap", "<<: *a",
            "<<", ".inf", "-.inf", ".nan", "9" * 5000, "0x" + "f" * 40, "1e999", "[", "{", "]", "}", "? ", ": ",
            "- ", "---", "...", "%YAML 1.1", "%TAG ! tag:x,", "\t", "\x00", "\ufeff", "'", '"', "|", ">", "#", "\\",
            "~", "null", "true", "-1", "0", "llama3:debug", "mixtral:debug", "/dev/zero", "..", "\n", "  "]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(SNIPPETS) | st.text(max_size=8), max_size=40))
def test_any_text_is_a_workload_or_one_line_bad_input(tmp_path_factory, parts):
    _load(tmp_path_factory.mktemp("fuzz"), " ".join(parts))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    line=st.integers(min_value=0, max_value=GOOD.count("\n")),
    cut=st.integers(min_value=0, max_value=60),
    junk=st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=6).map(" ".join),
)
def test_a_good_workload_with_junk_spliced_in_is_a_workload_or_one_line_bad_input(tmp_path_factory, line, cut, junk):
    lines = GOOD.splitlines(keepends=True)
    if line < len(lines):
        ln = lines[line]
        lines[line] = ln[:cut] + junk + ln[cut:]
    else:
        lines.append(junk + "\n")
    _load(tmp_path_factory.mktemp("fuzz"), "".join(lines))


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                      max_size=4), max_leaves=20)
KEYS = ["name", "models", "device", "dtype", "kernels", "parallel", "scenario", "timing", "hardware", "price",
        "intelligence", "routing", "profile", "seed", "kind", "prompt_tokens", "batch_sizes", "usd_per_gpu_hour"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=8))
def test_any_mapping_of_the_workload_keys_is_a_workload_or_one_line_bad_input(tmp_path_factory, data):
    base = yaml.safe_load(GOOD)
    _load(tmp_path_factory.mktemp("fuzz"), yaml.safe_dump({**base, **data}))


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text(textwrap.dedent(GOOD) + "name: u\n")
    with pytest.raises(BadInput, match=r"line 6, column 1: duplicate key 'name' \(first at line 1\)"):
        load_workload(p)
