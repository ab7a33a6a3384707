"""What the default run table tells a reader who sees only stdout: the basis of its numbers in the title, and
under it every caveat of the run, a busy machine included (the log's live note goes to stderr, maybe unseen)."""

from __future__ import annotations

import pytest
import yaml

from moebench.cli import main

WL = {"name": "busy", "device": "cpu", "roofs": False,
      "scenario": {"prompt_tokens": 8, "output_tokens": 2, "batch_sizes": [1]},
      "timing": {"warmup": 0, "repeats": 1}, "price": {"fallback_usd_per_gpu_hour": 0.5}}


def run_table(tmp_path, capsys, models: list) -> tuple[str, str]:
    """`moebench run` in-process on a tiny workload: (stdout, stderr)."""
    wl = tmp_path / "w.yaml"
    wl.write_text(yaml.safe_dump({**WL, "models": models}))
    with pytest.raises(SystemExit) as e:
        main(["run", str(wl), "--out", str(tmp_path / "out")])
    cap = capsys.readouterr()
    assert e.value.code == 0, cap.err
    return cap.out, cap.err


def notes(stdout: str) -> list[str]:
    """The note lines under the table (after its last border), each joined onto one line."""
    after = stdout[stdout.rindex("└"):].split("\n", 1)[1]
    return [" ".join(n.split()) for n in after.split("note:")[1:]]


def test_a_busy_machine_is_noted_under_the_table_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("moebench.machine.CONTENDED_SHARE", 0.0)  # any other process's CPU counts as contention
    out, err = run_table(tmp_path, capsys, ["llama3:debug", {"name": "mixtral:debug", "layers": 2}])
    busy = [n for n in notes(out) if "contended machine" in n]
    assert len(busy) == 1, out  # two contended records, one note
    assert busy[0].startswith("timed on a contended machine (llama3:debug batch 1: other processes kept")
    assert any("mixtral:debug ran 2 of its 4 layers" in n for n in notes(out))  # the other caveats stay
    assert err.count("note: timed on a busy machine") == 2  # and the live line, per record, while timing


def test_a_quiet_machine_gets_no_busy_note_and_the_title_names_the_basis(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("moebench.machine.CONTENDED_SHARE", 1e9)  # nothing counts as contention
    out, _ = run_table(tmp_path, capsys, ["llama3:debug"])
    assert not [n for n in notes(out) if "contended" in n], out
    title = " ".join(out[:out.index("┏")].split())
    assert title.endswith("(user-set) · measured"), title


def test_the_title_names_every_basis_of_its_rows(tmp_path, capsys, monkeypatch):
    # the extrapolated model first: the title keeps the bases' own order (measured first), not the rows'
    out, _ = run_table(tmp_path, capsys, [{"name": "mixtral:debug", "layers": 2}, "llama3:debug"])
    title = " ".join(out[:out.index("┏")].split())
    assert title.endswith("· measured, extrapolated"), title
    assert "extrap. 2/4L" in out  # and the narrow table marks the row that is not measured
