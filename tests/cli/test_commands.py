"""The CLI surface users and scripts rely on: --version, ls (with sources), validate, run, --json purity."""

import json
import subprocess
import sys

from moebench import __version__

REFERENCE = {
    "llama3:8b", "llama3:70b", "llama3:405b", "mixtral:8x7b", "gpt-oss:20b", "gpt-oss:120b", "deepseek-v3:671b",
    "deepseek-v3:r1", "deepseek-v3:kimi-k2", "qwen3-moe:30b-a3b", "qwen3-moe:235b-a22b",
}


def test_import_does_not_import_torch():
    code = "import sys, moebench; assert 'torch' not in sys.modules; print(moebench.__version__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == __version__


def test_version(cli):
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"moebench {__version__}"


def test_ls_models_json_lists_reference_architectures(cli):
    proc = cli("ls", "models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert REFERENCE <= set(rows)
    for name in REFERENCE:
        r = rows[name]
        assert r["kind"] in ("dense", "moe") and r["source"].startswith("moebench")
        assert abs(r["total_params"] / r["published_total_params"] - 1) < 0.03
        if r["published_active_params"]:
            assert abs(r["active_params"] / r["published_active_params"] - 1) < 0.03
    assert rows["mixtral:8x7b"]["kind"] == "moe" and rows["llama3:405b"]["kind"] == "dense"


def test_ls_other_catalogs(cli, tmp_path):
    hw = json.loads(cli("ls", "hardware", "--json").stdout)
    assert {"h100_sxm", "gb200_nvl72", "mi355x", "cpu"} <= {h["id"] for h in hw}
    assert all(h["source"] for h in hw)
    wls = json.loads(cli("ls", "workloads", "--json").stdout)
    assert any(w["path"].endswith("quickstart.yaml") and w["valid"] for w in wls)
    # outside the repository: the workloads `run` would default to, not an empty table
    elsewhere = json.loads(cli("ls", "workloads", "--json", cwd=tmp_path).stdout)
    assert [w["name"] for w in elsewhere] == [w["name"] for w in wls]
    table = cli("ls", "hardware")
    assert table.returncode == 0 and "h200_sxm" in table.stdout


def test_ls_metrics_gives_every_declared_direction(cli):
    """The metric table a user can read: tokens per joule is better higher (a name-guessing gate judged it lower)."""
    rows = {r["name"]: r for r in json.loads(cli("ls", "metrics", "--json").stdout)}
    assert rows["tokens_per_joule"]["better"] == "higher"
    assert rows["joules_per_token"]["better"] == "lower"
    assert rows["ttft_ms"]["gated"] is True


def test_validate_ok(cli, repo):
    proc = cli("validate", "workloads/quickstart.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["valid"] and doc["workload"]["name"] == "quickstart"


def test_cli_surface_is_frozen(cli):
    """The verbs scripts rely on; removing or renaming one is a breaking change."""
    proc = cli("--help")
    assert proc.returncode == 0
    for verb in ("run", "ls", "validate", "compare", "report", "gate", "project"):
        assert f" {verb} " in proc.stdout, verb
    run_help = cli("run", "--help").stdout
    for opt in ("--device", "--out", "--json", "--repeats", "--nproc", "--profile"):
        assert opt in run_help, opt
