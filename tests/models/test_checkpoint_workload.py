"""A workload entry with `weights: <checkpoint>`: the entry's name must describe the checkpoint, the path is
relative to the workload file, and every disagreement is one line before anything is built."""

from __future__ import annotations

import json
import shutil

import pytest

from moebench.errors import BadInput
from moebench.results import load_result
from moebench.workload import load_workload
from tests.cli.conftest import assert_one_line_error, moebench


def _workload(dir_, name, weights, layers=None, extra=""):
    entry = {"name": name, "weights": str(weights)} | ({"layers": layers} if layers else {})
    p = dir_ / "wl.yaml"
    p.write_text(f"name: ck\nmodels: [{json.dumps(entry)}]\ndevice: cpu\n"
                 f"scenario: {{prompt_tokens: 8, output_tokens: 3, batch_sizes: [2]}}\n"
                 f"timing: {{warmup: 1, repeats: 2}}\n{extra}")
    return p


def _error(path) -> str:
    with pytest.raises(BadInput) as exc:
        load_workload(path)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_checkpoint_entry_runs_under_its_own_label_with_a_path_relative_to_the_workload(hf_checkpoints, tmp_path):
    shutil.copytree(hf_checkpoints("mixtral")[1], tmp_path / "ck")
    wl = _workload(tmp_path, "mixtral:tiny", "ck")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), cwd=tmp_path.parent)  # not the workload's folder
    assert proc.returncode == 0, proc.stderr
    assert f"weights from {tmp_path / 'ck'}" in proc.stderr
    (rec,) = load_result(next((tmp_path / "out").glob("*.json")))["records"]
    assert rec["model"] == "mixtral:tiny" and rec["kind"] == "moe" and rec["weights"] == str(tmp_path / "ck")
    assert rec["intelligence"] is None  # a label of the user's: no catalog score is borrowed
    assert rec["layers_total"] == 2 and rec["params"]["active"] < rec["params"]["total"]


def test_checkpoint_entry_disagreements_are_one_line(hf_checkpoints, tmp_path):
    ck = shutil.copytree(hf_checkpoints("mixtral")[1], tmp_path / "ck")
    assert f"weights {tmp_path / 'nowhere'}: no such checkpoint directory" in _error(_workload(tmp_path, "mixtral:tiny", "nowhere"))
    assert "hold a mixtral checkpoint (family mixtral), not llama3" in _error(_workload(tmp_path, "llama3:8b", ck))
    msg = _error(_workload(tmp_path, "mixtral:8x7b", ck))  # a catalog flavor must be that model
    assert "not mixtral:8x7b's architecture (num_hidden_layers 2 vs 32" in msg and "mixtral:my-checkpoint" in msg
    assert "layers 20 but the checkpoint" in _error(_workload(tmp_path, "mixtral:tiny", ck, layers=20))
    cfg = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps(cfg | {"num_hidden_layers": "two"}))
    assert "num_hidden_layers must be a whole number >= 0, got 'two'" in _error(_workload(tmp_path, "mixtral:tiny", ck))
    (ck / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "num_local_experts"}))
    assert "KeyError: 'num_local_experts or num_experts'" in _error(_workload(tmp_path, "mixtral:tiny", ck))


def test_validate_catches_a_missing_checkpoint(tmp_path):
    proc = moebench("validate", str(_workload(tmp_path, "mixtral:tiny", "/nonexistent/ck")))
    assert_one_line_error(proc, 3, "models[0]", "weights /nonexistent/ck: no such checkpoint directory")


def test_checkpoint_entry_runs_expert_parallel_under_its_own_label(hf_checkpoints, tmp_path):
    """The parallel plan is checked against the checkpoint's architecture (a label is not a catalog flavor)."""
    shutil.copytree(hf_checkpoints("mixtral")[1], tmp_path / "ck")
    wl = _workload(tmp_path, "mixtral:tiny", "ck", extra="parallel: {world_size: 2, expert: 2}\n")
    proc = moebench("run", str(wl), "--nproc", "2", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (rec,) = load_result(next((tmp_path / "out").glob("*.json")))["records"]
    assert rec["model"] == "mixtral:tiny" and rec["cost"]["n_gpus"] == 2
    wl = _workload(tmp_path, "mixtral:tiny", "ck", extra="parallel: {world_size: 4, expert: 4}\n")  # 6 experts
    assert "parallel.expert: 4 does not divide the 6 experts of mixtral:tiny" in _error(wl)
