"""Where `run` writes: only inside `--out`, whatever the workload's name; a full or read-only `--out` is refused
before measuring (exit 4), and one that fails later loses no measurement (exit 5, the results saved elsewhere)."""

import errno
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from moebench import outdir
from moebench.errors import ExitCode
from moebench.engine.batch import trace_dir_for
from moebench.results import new_run_id
from tests.cli.conftest import assert_one_line_error, read_stderr_until, start_moebench

TINY = {"models": ["llama3:debug"], "device": "cpu", "roofs": False,
        "scenario": {"prompt_tokens": 8, "output_tokens": 2, "batch_sizes": [1]},
        "timing": {"warmup": 0, "repeats": 1}, "price": {"fallback_usd_per_gpu_hour": 0.1}}


def _workload(tmp_path: Path, **over) -> Path:
    p = tmp_path / f"w-{uuid.uuid4().hex[:6]}.yaml"
    p.write_text(yaml.safe_dump({**TINY, **over}))
    return p


@pytest.mark.parametrize("name", ["x/../../../ESCAPED", "a/b/c", "../up", "..", "/abs/olute", "", "~me", "x" * 400])
def test_run_ids_and_trace_folders_stay_one_component_inside_out(tmp_path, name):
    out = tmp_path / "out"
    rid = new_run_id(name)
    for p in (out / f"{rid}.json", trace_dir_for(out / f"{rid}.json", name, 1)):
        assert p.resolve().is_relative_to(out.resolve()), p
    assert "/" not in rid and not rid.startswith(".") and len(rid) < 128


def test_a_hostile_workload_name_writes_only_inside_out(cli, tmp_path):
    out = tmp_path / "a" / "b" / "c" / "out"
    proc = cli("run", str(_workload(tmp_path, name="x/../../../ESCAPED")), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".json")
    assert len(written) == 1 and written[0].parent == out, written  # one file, directly in --out
    assert json.loads(written[0].read_text())["workload"]["name"] == "x/../../../ESCAPED"  # the name is kept


def test_a_full_disk_at_the_write_saves_the_document_elsewhere(tmp_path, monkeypatch):
    """The injected form of the tmpfs tests below, for machines where mounting is not allowed."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "spare"))
    (tmp_path / "spare").mkdir()
    monkeypatch.setattr(outdir.tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    real = outdir.write_atomic  # the --out folder is full; the fallback folder is not

    def full(path, doc):
        if Path(path).parent == tmp_path / "out":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, doc)

    doc = {"complete": False, "records": [{"model": "m", "batch_size": 1}]}
    with pytest.raises(outdir.ResultNotSaved) as err:
        outdir.save_result(tmp_path / "out" / "r.json", doc, write=full)
    assert err.value.code == ExitCode.RUN_FAILED
    spare = tmp_path / "spare" / "moebench-unsaved-r.json"
    assert str(spare) in str(err.value) and "No space left on device" in str(err.value)
    assert json.loads(spare.read_text())["records"] == doc["records"]


def test_when_the_fallback_fails_too_the_document_is_printed(tmp_path, capsys):
    def refuse(path, doc):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with pytest.raises(outdir.ResultNotSaved, match="printed on stdout"):
        outdir.save_result(tmp_path / "r.json", {"complete": True, "records": [1, 2]}, write=refuse)
    assert json.loads(capsys.readouterr().out)["records"] == [1, 2]


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MB tmpfs of our own (root only), unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?); the injected-ENOSPC test covers the write path")
    yield mnt
    for _ in range(50):
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)


def _remount(mnt: Path, opts: str) -> None:
    for _ in range(100):  # EBUSY while a file is open for writing
        if subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"cannot remount {mnt} {opts}")


def test_a_read_only_out_is_refused_before_measuring(cli, tmp_path, tmpfs):
    _remount(tmpfs, "ro")
    proc = cli("run", str(_workload(tmp_path, name="t")), "--out", str(tmpfs / "out"))
    assert_one_line_error(proc, 4, f"--out {tmpfs / 'out'}: cannot write there (Read-only file system)")


def test_a_nearly_full_out_is_refused_before_measuring(cli, tmp_path, tmpfs):
    _remount(tmpfs, "size=200k")
    proc = cli("run", str(_workload(tmp_path, name="t")), "--out", str(tmpfs))
    assert_one_line_error(proc, 4, f"--out {tmpfs}: only", "KB free")


def _run_then_make_read_only(tmp_path: Path, tmpfs: Path, wl: Path, after: str, *args: str) -> tuple[int, str, Path]:
    """Run `wl` onto the tmpfs, remount it read-only once stderr says `after` (a result was written before it):
    (exit code, stderr, the $TMPDIR the run was given)."""
    spare = tmp_path / "spare"
    spare.mkdir()
    p = start_moebench("run", str(wl), *args, "--out", str(tmpfs), env={"TMPDIR": str(spare)})
    try:
        seen = read_stderr_until(p, after)
        assert list(tmpfs.glob("*.json")), seen
        _remount(tmpfs, "ro")
        _, rest = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in rest
    return p.returncode, seen + rest, spare


def test_out_turning_read_only_mid_run_loses_no_measurement(tmp_path, tmpfs):
    """The first model's results are written to the tmpfs; it is then remounted read-only, so the write after
    the second model fails (EROFS): both models' records land in the named fallback file, exit 5."""
    wl = _workload(tmp_path, name="two", models=["llama3:debug", "mixtral:debug"],
                   timing={"warmup": 1, "repeats": 40})
    code, err, spare = _run_then_make_read_only(tmp_path, tmpfs, wl, "building mixtral:debug")
    assert code == 5, err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert "Read-only file system" in last and f"saved to {spare}" in last, last
    doc = json.loads(Path(last.rsplit(" ", 2)[-2]).read_text())
    assert [r["model"] for r in doc["records"]] == ["llama3:debug", "mixtral:debug"]


@pytest.mark.slow
def test_out_turning_read_only_mid_run_loses_no_measurement_with_two_ranks(tmp_path, tmpfs):
    """The same under `--nproc 2`: rank 0 saves to the fallback, and the launcher writes its verdict into that
    file rather than over it with an empty one."""
    wl = _workload(tmp_path, name="ep2", models=["mixtral:debug"], parallel={"world_size": 2, "expert": 2},
                   scenario={"prompt_tokens": 8, "output_tokens": 2, "batch_sizes": [2, 4]},
                   timing={"warmup": 1, "repeats": 30})
    code, err, spare = _run_then_make_read_only(tmp_path, tmpfs, wl, "batch 4:", "--nproc", "2")
    assert code == 5, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: rank 0 of 2 failed: "), err  # not the survivor
    assert "ProcessGroupGloo" not in err  # gloo's own C++ log of the peer's failure stays out of the one line
    assert "Read-only file system" in errors[0] and str(spare) in errors[0], err
    (saved,) = spare.glob("moebench-unsaved-*.json")
    doc = json.loads(saved.read_text())
    assert doc["complete"] is False and [r["batch_size"] for r in doc["records"]] == [2, 4], doc.get("error")


def test_an_empty_or_file_out_is_bad_input_and_writes_nothing(tmp_path, monkeypatch):
    """`--out ''` would be the working folder and a file cannot hold results: both are the argument's fault (exit 3)."""
    monkeypatch.chdir(tmp_path)
    for bad in ("", "  "):
        with pytest.raises(outdir.BadInput, match="--out: empty"):
            outdir.check_out_dir(bad)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(outdir.BadInput, match="exists and is not a folder"):
        outdir.check_out_dir(tmp_path / "afile")
    with pytest.raises(outdir.BadInput, match="afile is not a folder"):
        outdir.check_out_dir(tmp_path / "afile" / "sub" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_run_refused_after_the_folder_check_leaves_no_empty_folder(cli, tmp_path):
    """`--nproc 2` against a one-rank workload is refused once --out was checked: the folders the check made go
    again, and a folder that was there before, or that holds anything, stays."""
    wl = str(_workload(tmp_path, name="t"))
    proc = cli("run", wl, "--out", str(tmp_path / "new" / "out"), "--nproc", "2")
    assert_one_line_error(proc, 3, "parallel.world_size is 1 but --nproc is 2")
    assert not (tmp_path / "new").exists()
    (tmp_path / "had" / "out").mkdir(parents=True)
    proc = cli("run", wl, "--out", str(tmp_path / "had" / "out" / "x"), "--nproc", "2")
    assert proc.returncode == 3 and (tmp_path / "had" / "out").is_dir() and not (tmp_path / "had" / "out" / "x").exists()


def test_out_dir_for_removes_what_a_dotted_out_made(tmp_path):
    with pytest.raises(RuntimeError), outdir.out_dir_for(tmp_path / "new" / ".." / "o2"):
        raise RuntimeError("refused")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), outdir.out_dir_for(tmp_path / "o3", tidy=False):  # not rank 0's folder
        raise RuntimeError("refused")
    assert [p.name for p in tmp_path.iterdir()] == ["o3"]


def test_out_dir_for_never_removes_a_folder_with_anything_in_it(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), outdir.out_dir_for(out):
        (out / "result.json").write_text("{}")
        raise RuntimeError("a failure after a result was written")
    assert (out / "result.json").is_file()


def test_an_empty_out_on_the_command_line_is_refused_not_read_as_the_working_folder(cli, tmp_path):
    """typer's Path type reads `--out ''` as `.`: the run would write wherever the shell stood."""
    here = tmp_path / "here"
    here.mkdir()
    for cmd in (["run", str(_workload(tmp_path, name="t"))], ["report", str(tmp_path / "none.json")]):
        proc = cli(*cmd, "--out", "", cwd=here)
        assert_one_line_error(proc, 3, "--out: empty; give a folder")
    assert list(here.iterdir()) == []
    (tmp_path / "afile").write_text("x")
    proc = cli("run", str(_workload(tmp_path, name="t")), "--out", str(tmp_path / "afile" / "sub"))
    assert_one_line_error(proc, 3, f"{tmp_path / 'afile'} is not a folder")
