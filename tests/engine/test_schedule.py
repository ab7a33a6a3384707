"""The interleaved schedule: every model × batch warmed up first, then one timed repeat of each per round."""

from __future__ import annotations

from moebench.engine import generate
from moebench.engine.runner import run_workload
from moebench.workload import parse_workload

WL = {
    "name": "sched", "models": ["llama3:debug", "mixtral:debug"], "device": "cpu", "roofs": False,
    "scenario": {"prompt_tokens": 8, "output_tokens": 3, "batch_sizes": [1, 2]},
    "timing": {"warmup": 1, "repeats": 3, "schedule": "interleaved"},
}


def test_interleaved_runs_repeats_in_rounds_and_keeps_every_sample(tmp_path, monkeypatch):
    calls: list[tuple[int, int, bool]] = []  # (bench, batch, timed) in the order they ran
    orig = generate.GenerationBench.run

    def spy(self, n, *, timed=True):
        calls.extend([(id(self), self.ids_BS.shape[0], timed)] * n)
        return orig(self, n, timed=timed)

    monkeypatch.setattr(generate.GenerationBench, "run", spy)
    doc, path = run_workload(parse_workload(WL), out_dir=tmp_path)

    timed = [c for c in calls if c[2]]
    benches = list(dict.fromkeys(b for b, _, _ in timed))
    assert len(benches) == 4  # 2 models × 2 batch sizes, each its own cache
    assert all(not c[2] for c in calls[: len(calls) - len(timed)])  # every warm-up before the first timed repeat
    rounds = [timed[i: i + 4] for i in range(0, len(timed), 4)]
    assert len(rounds) == 3 and all([b for b, _, _ in r] == benches for r in rounds)  # one repeat of each per round

    assert doc["complete"] and path.exists() and doc["hardware"]["measured_roofs"] is None
    assert [(r["model"], r["batch_size"]) for r in doc["records"]] == [
        ("llama3:debug", 1), ("llama3:debug", 2), ("mixtral:debug", 1), ("mixtral:debug", 2)]
    for r in doc["records"]:
        assert r["metrics"]["ttft_ms"]["n"] == r["metrics"]["tpot_ms"]["n"] == 3
        assert r["metrics"]["itl_ms"]["n"] == 3 * 2  # output 3 tokens: 2 decode steps per repeat
