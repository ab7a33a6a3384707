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


NEW_MODEL_TYPE_PLUGIN = '''
from moebench.models.config import ArchConfig, hf_common
from moebench.models.spec import ModelSpec, build_decoder


def parse_hf(d):
    """Qwen3's QK-normed attention over a dense Llama MLP, under a model_type no built-in family parses."""
    return ArchConfig(**hf_common(d, rms_norm_eps=1e-5), qk_norm=True)


SPEC = ModelSpec(
    family="toy-qk",
    kind="dense",
    description="a third-party family with its own config.json model_type",
    build=build_decoder,
    debug={"model_type": "toy_qk", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 96, "vocab_size": 256},
    hf_model_types=("toy_qk",),
    parse_hf=parse_hf,
)
'''


def toy_qk_checkpoint(path, cfg: dict) -> None:
    """A Hugging Face checkpoint directory (config.json + model.safetensors, random weights) of `cfg`."""
    import torch
    from safetensors.torch import save_file

    d, f, v, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,), "lm_head.weight": (v, d)}
    for i in range(cfg["num_hidden_layers"]):
        b = f"model.layers.{i}"
        shapes |= {f"{b}.input_layernorm.weight": (d,), f"{b}.post_attention_layernorm.weight": (d,),
                   f"{b}.self_attn.q_proj.weight": (q, d), f"{b}.self_attn.k_proj.weight": (kv, d),
                   f"{b}.self_attn.v_proj.weight": (kv, d), f"{b}.self_attn.o_proj.weight": (d, q),
                   f"{b}.self_attn.q_norm.weight": (hd,), f"{b}.self_attn.k_norm.weight": (hd,),
                   f"{b}.mlp.gate_proj.weight": (f, d), f"{b}.mlp.up_proj.weight": (f, d),
                   f"{b}.mlp.down_proj.weight": (d, f)}
    g = torch.Generator().manual_seed(0)
    path.mkdir()
    save_file({k: torch.randn(s, generator=g) * 0.1 for k, s in shapes.items()}, path / "model.safetensors",
              metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(cfg))


def test_plugin_adds_a_model_type_that_runs_from_a_checkpoint(cli, tmp_path):
    env = install(tmp_path / "site", "toy_qk_plugin", NEW_MODEL_TYPE_PLUGIN, "[moebench.models]\ntoy-qk = toy_qk_plugin:SPEC\n")
    cfg = {"model_type": "toy_qk", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 96, "vocab_size": 256}
    toy_qk_checkpoint(tmp_path / "ck", cfg)
    wl = workload(tmp_path, json.dumps({"name": "toy-qk:debug", "weights": str(tmp_path / "ck")}))
    # without the plugin no family parses the model_type
    assert_one_line_error(cli("run", str(wl), "--out", str(tmp_path / "o0")), 3, "model_type 'toy_qk' is not supported")
    proc = cli("run", str(wl), "--json", "--out", str(tmp_path / "o"), env=env)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)["records"][0]
    assert rec["model"] == "toy-qk:debug" and rec["kind"] == "dense"
    # the plugin's parser read the checkpoint: QK-norm weights (2 × head_dim per layer) are counted
    attn = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 2 * 16
    layer = attn + 3 * 64 * 96 + 2 * 64
    assert rec["params"]["total"] == 256 * 64 + 2 * layer + 64 + 256 * 64
    assert list((tmp_path / "o").glob("*.json")), "the record is written under --out"


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
