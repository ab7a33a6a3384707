"""A third-party model plugin, installed only through a *.dist-info/entry_points.txt, runs via `moebench run`."""

import json
import textwrap

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


def test_fake_third_party_plugin_runs(cli, tmp_path):
    site = tmp_path / "site"
    (site / "toy_moe_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "toy_moe_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-moe-plugin\nVersion: 0.1\n")
    (site / "toy_moe_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[moebench.models]\ntoy-moe = toy_moe_plugin:SPEC\n")
    (site / "toy_moe_plugin.py").write_text(PLUGIN)
    wl = tmp_path / "w.yaml"
    wl.write_text(textwrap.dedent("""\
        name: plugin
        models: [toy-moe:debug]
        device: cpu
        scenario: {prompt_tokens: 8, output_tokens: 3, batch_sizes: [2]}
        timing: {warmup: 0, repeats: 2}
    """))
    env = {"PYTHONPATH": str(site)}
    listed = json.loads(cli("ls", "models", "--json", env=env).stdout)
    toy = [r for r in listed if r["name"] == "toy-moe:debug"]
    assert toy and toy[0]["source"].startswith("toy-moe-plugin") and toy[0]["kind"] == "moe"
    proc = cli("run", str(wl), "--json", "--out", str(tmp_path / "o"), env=env)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)["records"][0]
    assert rec["model"] == "toy-moe:debug" and rec["kind"] == "moe"
    # 6 experts, 3 active: active/total params reflect the plugin's own config
    assert 0 < rec["params"]["active_ratio"] < 1
