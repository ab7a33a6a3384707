"""Third-party plugins, installed only through a *.dist-info/entry_points.txt: a model and a kernel backend run
via `moebench run`; a broken one is one line naming it."""

import json
import textwrap

from moebench.catalog import get_hardware
from tests.cli.conftest import assert_one_line_error

PLUGIN = '''
from moebench.models.spec import ModelSpec


def _build(cfg):
    from moebench.models.common.transformer import DecoderLM
    return DecoderLM(cfg)


SPEC = ModelSpec(
    family="toy-moe",
    kind="moe",
    description="a third-party MoE for the plugin test",
    build=_build,
    debug={"model_type": "mixtral", "hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 128, "num_local_experts": 6,
           "num_experts_per_tok": 3, "vocab_size": 512},
)
'''


def install(site, module: str, code: str, entry_points: str) -> dict:
    """A distribution `module` holding `code`, with `entry_points` (entry_points.txt text); the env that finds it."""
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    (site / f"{module}.py").write_text(code)
    return {"PYTHONPATH": str(site)}


def workload(tmp_path, model: str, extra: str = ""):
    wl = tmp_path / "w.yaml"
    wl.write_text(textwrap.dedent(f"""\
        name: plugin
        models: [{model}]
        device: cpu
        scenario: {{prompt_tokens: 8, output_tokens: 3, batch_sizes: [2]}}
        timing: {{warmup: 0, repeats: 2}}
    """) + extra)
    return wl


def test_fake_third_party_plugin_runs(cli, tmp_path):
    env = install(tmp_path / "site", "toy_moe_plugin", PLUGIN, "[moebench.models]\ntoy-moe = toy_moe_plugin:SPEC\n")
    wl = workload(tmp_path, "toy-moe:debug")
    listed = json.loads(cli("ls", "models", "--json", env=env).stdout)
    toy = [r for r in listed if r["name"] == "toy-moe:debug"]
    assert toy and toy[0]["source"].startswith("toy-moe-plugin") and toy[0]["kind"] == "moe"
    proc = cli("run", str(wl), "--json", "--out", str(tmp_path / "o"), env=env)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)["records"][0]
    assert rec["model"] == "toy-moe:debug" and rec["kind"] == "moe"
    # 6 experts, 3 active: active/total params reflect the plugin's own config
    assert 0 < rec["params"]["active_ratio"] < 1


KERNEL_PLUGIN = """
import dataclasses
import os

from moebench_kernels.backends import TORCH


class Counting:
    \"\"\"The torch backend, with every fused_moe call counted in a file.\"\"\"

    def build(self, device):
        base = TORCH.build(device)

        def fused_moe(*args, **kwargs):
            with open(os.environ["COUNT_FILE"], "a") as f:
                f.write("x")
            return base.fused_moe(*args, **kwargs)

        return dataclasses.replace(base, name="counting", fused_moe=fused_moe)


SPEC = Counting()
"""


def test_kernel_backend_plugin_is_used_by_a_run(cli, tmp_path):
    env = install(tmp_path / "site", "counting_kernels", KERNEL_PLUGIN,
                  "[moebench.kernels]\ncounting = counting_kernels:SPEC\n")
    env["COUNT_FILE"] = str(tmp_path / "count")
    listed = json.loads(cli("ls", "kernels", "--json", env=env).stdout)
    assert {r["name"] for r in listed} >= {"torch", "triton", "counting"}
    proc = cli("run", str(workload(tmp_path, "mixtral:debug", "kernels: counting\n")), "--json",
               "--out", str(tmp_path / "o"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hardware"]["kernels"] == "counting"
    assert len((tmp_path / "count").read_text()) > 0  # the plugin's fused_moe ran the MoE layers
    # a name no plugin provides is a workload error listing the ones that exist
    proc = cli("validate", str(workload(tmp_path, "mixtral:debug", "kernels: countin\n")), env=env)
    assert_one_line_error(proc, 3, "kernels 'countin' must be one of auto, counting, torch, triton")


def test_broken_plugins_are_one_line_naming_them(cli, tmp_path):
    env = install(tmp_path / "a", "exploding", "raise RuntimeError('plugin import exploded')\n",
                  "[moebench.models]\nboom = exploding:SPEC\n")
    assert_one_line_error(cli("ls", "models", env=env), 3, "plugin 'boom' (exploding:SPEC",
                          "RuntimeError: plugin import exploded")
    # a hardware plugin may give plain mappings: they are validated like the built-in catalog
    hw = get_hardware("h100_sxm").model_dump(mode="json", exclude={"id"}) | {"name": "Acme X1", "hbm_tbps": 4.0}
    env = install(tmp_path / "b", "acme_hw", f"CATALOG = {{'acme_x1': {hw!r}}}\n",
                  "[moebench.hardware]\nacme = acme_hw:CATALOG\n")
    proc = cli("ls", "hardware", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert any(r["id"] == "acme_x1" and r["hbm_tbps"] == 4.0 for r in json.loads(proc.stdout))
    env = install(tmp_path / "c", "bad_hw", "CATALOG = {'bad_x1': {'name': 'X1'}}\n",
                  "[moebench.hardware]\nbad = bad_hw:CATALOG\n")
    assert_one_line_error(cli("ls", "hardware", env=env), 3, "hardware plugin 'bad': 'bad_x1' is not a valid Hardware")
