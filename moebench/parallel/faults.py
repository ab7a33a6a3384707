"""A dead or hung rank becomes exit 5 with one line naming it and a partial results file — never a hang.

- gloo groups carry the workload's `collective_timeout_s` and raise at it; NCCL groups get a longer one
  (`mesh.group_timeout_s`), so that this watchdog, not NCCL's abort of the waiting ranks, reports a hang.
- A heartbeat thread publishes `beats collectives-entered` for this rank to the launcher's store every
  HEARTBEAT_S. The same thread is the watchdog: a collective in flight for longer than 1.5 × the timeout + 10 s
  fails the run even if the backend never returns.
- On failure a rank posts `fail/<rank>` to the store, then names the culprit: itself if it raised by itself;
  else a rank that posted such a failure of its own; else the ranks whose heartbeat stopped (died); else the
  ranks that entered fewer collectives than the others (hung). Rank 0 saves the partial result; a rank started by `moebench run --nproc` also leaves a
  one-line report for the launcher (MOEBENCH_LAUNCH_DIR), which prints the verdict. Then `os._exit(5)`:
  no atexit hook or process-group destructor can block the exit.
- SIGTERM (a launcher stopping the survivors, or a scheduler stopping the job) becomes `Terminated`, so rank 0
  still saves what it measured and every rank exits.

Test-only knobs, read here and nowhere else: MOEBENCH_TEST_KILL_RANK=r, MOEBENCH_TEST_HANG_RANK=r or
MOEBENCH_TEST_RAISE_RANK=r, with MOEBENCH_TEST_KILL_AFTER_STEPS=n: rank r SIGKILLs itself (sleeps forever, raises
RuntimeError) at the start of its (n+1)-th model forward (prefill or decode step), counted from the start of the
run; MOEBENCH_TEST_FAULT_STAMP=path records when.
MOEBENCH_TEST_ABORT_TEARDOWN_RANK=r: rank r aborts (SIGABRT) as gloo's teardown sometimes does, after its work.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from moebench.errors import ExitCode, MoebenchError, Terminated
from moebench.outdir import ResultNotSaved
from moebench.parallel import comm
from moebench.parallel.mesh import ParallelContext, shutdown, watchdog_limit_s

HEARTBEAT_S = 0.5
_TEST_STEPS = [0]  # model forwards so far on this rank, across every model of the run (test knobs only)
LAUNCH_DIR_ENV = "MOEBENCH_LAUNCH_DIR"


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MoebenchError):  # our own messages are one line already, and name what they must
        return " ".join(str(exc).split())
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__


def _first_sentence(text: str) -> str:
    """gloo appends advice to its errors ("This is typically caused by…"); the first sentence is the fact."""
    return text.split(". ")[0].rstrip(".")


class Guard:
    """Per-rank fault handling for one distributed run; `start()` it after the process group is up."""

    def __init__(self, ctx: ParallelContext):
        self.ctx = ctx
        self.collectives = 0
        self.inflight: Optional[tuple[str, float, float]] = None  # (name, since, limit_s)
        # rank 0 sets this: (message, culprit ranks) -> path of the partial results file written
        self.save: Callable[[str, list[int]], Optional[Path]] = lambda msg, culprits: None
        self.limit_s = watchdog_limit_s(ctx.timeout_s)
        self.stage = ""  # what the run is doing, for the failure line (the engine sets e.g. "mixtral:debug batch 8")
        self._stop = threading.Event()
        self._failing = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="moebench-heartbeat", daemon=True)
        self._old_term: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> "Guard":
        comm.set_guard(self)
        self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        self._publish(0)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()  # the thread uses the store; it must be done before the store is destroyed
        comm.set_guard(None)
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)

    def finish(self) -> None:
        """After `stop()`, once this rank's work is whole (rank 0's results saved): tell the launcher, then tear the
        process group down.

        gloo can abort a rank in its teardown ("terminate called without an active exception", SIGABRT) after every
        collective returned; the launcher reads the `rank<r>.done` markers to tell that from a run that failed."""
        d = os.environ.get(LAUNCH_DIR_ENV)
        if d:
            try:
                (Path(d) / f"rank{self.ctx.rank}.done").touch()
            except OSError:
                pass
        try:
            self.ctx.barrier()  # no rank tears down (and may abort) before every rank has marked its work whole
        except (comm.CollectiveFailed, TimeoutError) as exc:
            # another rank failed after this one's work was whole: exit 5 with a peer's report, not an internal
            # error. Rank 0's results stay as saved (whole), and the heartbeats, stopped with the guard, cannot
            # say who failed: the line does not guess (the launcher names the rank from its exit code). A SIGTERM
            # here is the agent stopping this rank after another's teardown abort: it still exits 130.
            self.save = lambda msg, culprits: None
            self.stage = "the teardown, after this rank's work was whole"
            self.fail(exc, diagnose=False)
        # The work is whole and saved; what is left is the teardown and rank 0's table. A rank that gloo aborts now
        # makes the agent stop the others (SIGTERM): rank 0 would lose its table mid-print, so they finish instead
        # (the agent's SIGKILL still follows if one hangs; the CLI's last handler takes over when it returns).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.environ.get("MOEBENCH_TEST_ABORT_TEARDOWN_RANK") == str(self.ctx.rank):
            os.abort()
        shutdown()

    def _on_term(self, signum: int, frame: Any) -> None:
        raise Terminated("stopped by SIGTERM")

    # -- comm.InFlight -----------------------------------------------------------------------------------
    def enter(self, name: str, limit_s: Optional[float] = None) -> None:
        self.collectives += 1
        self.inflight = (name, time.monotonic(), limit_s or self.limit_s)

    def leave(self) -> None:
        self.inflight = None

    # -- heartbeat and watchdog ----------------------------------------------------------------------------
    def _publish(self, beats: int) -> None:
        try:
            self.ctx.store.set(f"hb/{self.ctx.rank}", f"{beats} {self.collectives}")
        except Exception:  # noqa: BLE001 - the store's host may be gone; the heartbeat is best effort
            pass

    def _beat(self) -> None:
        beats = 0
        while not self._stop.wait(HEARTBEAT_S):
            beats += 1
            self._publish(beats)
            inflight = self.inflight
            if inflight is not None and time.monotonic() - inflight[1] > inflight[2]:
                self.fail(TimeoutError(f"collective {inflight[0]} did not return within {inflight[2]:.0f} s"))

    def _read(self, key: str) -> Optional[str]:
        try:
            return self.ctx.store.get(key).decode() if self.ctx.store.check([key]) else None
        except Exception:  # noqa: BLE001
            return None

    def _snapshot(self) -> dict[int, tuple[int, int]]:
        out = {}
        for r in range(self.ctx.world_size):
            v = self._read(f"hb/{r}")
            if v:
                beats, n = v.split()
                out[r] = (int(beats), int(n))
        return out

    def diagnose(self) -> tuple[list[int], str]:
        """(culprit ranks, what happened to them), from the heartbeats; ([], "") when nobody stands out."""
        first = self._snapshot()
        time.sleep(3 * HEARTBEAT_S)
        second = self._snapshot()
        reports = {r: json.loads(v) for r in range(self.ctx.world_size) if (v := self._read(f"fail/{r}")) is not None}
        raised = sorted(r for r, rep in reports.items() if rep["kind"] == "local" and r != self.ctx.rank)
        if raised:  # a rank failed by itself (and told the store): that is the cause, whatever followed
            return raised, f"failed: {reports[raised[0]]['error']}"
        others = [r for r in range(self.ctx.world_size) if r != self.ctx.rank and r not in reports]
        dead = [r for r in others if r not in second or second[r][0] == first.get(r, (None,))[0]]
        if dead:
            return dead, "died (its heartbeat stopped)"
        if not second:
            return [], ""
        top = max(n for _, n in second.values())
        behind = [r for r in others if second[r][1] < top]
        if behind:
            return behind, "hung (it stopped entering collectives while the others waited)"
        return [], ""

    # -- failure -------------------------------------------------------------------------------------------
    def fail(self, exc: BaseException, *, diagnose: bool = True) -> None:
        """Report, save (rank 0), exit 5. Never returns; safe to call from the watchdog thread. `diagnose`: name
        the culprit from the heartbeats (only while they beat)."""
        if not self._failing.acquire(blocking=False):
            if threading.current_thread() is self._thread:
                return
            while True:  # the other thread is already failing the run and will exit the process
                time.sleep(1)
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
        ctx = self.ctx
        local = not isinstance(exc, (comm.CollectiveFailed, Terminated, TimeoutError))
        try:
            ctx.store.set(f"fail/{ctx.rank}", json.dumps({"kind": "local" if local else "peer", "error": _one_line(exc)}))
        except Exception:  # noqa: BLE001
            pass
        saw = (f"{exc.name} fail: {_first_sentence(exc.cause)}" if isinstance(exc, comm.CollectiveFailed)
               else _one_line(exc))
        if local:
            culprits, msg = [ctx.rank], f"rank {ctx.rank} of {ctx.world_size} failed: {_one_line(exc)}"
        else:
            culprits, what = self.diagnose() if diagnose else ([], "")
            if culprits:
                names = ", ".join(str(r) for r in culprits)
                msg = f"rank{'s' if len(culprits) > 1 else ''} {names} of {ctx.world_size} {what}; rank {ctx.rank} saw {saw}"
            else:
                msg = f"the run stopped on rank {ctx.rank} of {ctx.world_size}: {saw}"
        if self.stage:
            msg = f"{msg} (during {self.stage})"
        self._report(msg, culprits, "local" if local else "peer")
        path = None
        # --out refused a write: the document went where the message says, as it was (a whole one stays whole)
        if ctx.is_rank0 and not isinstance(exc, ResultNotSaved):
            try:
                path = self.save(msg, culprits)
            except Exception as save_exc:  # noqa: BLE001 - still exit 5, and say why nothing was saved
                msg += f" (saving partial results failed: {_one_line(save_exc)})"
        if ctx.is_rank0 and not os.environ.get(LAUNCH_DIR_ENV):
            tail = f"; partial results in {path}" if path else ""
            sys.stderr.write(f"error: {msg}{tail}".replace("\n", " ") + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(ExitCode.RUN_FAILED))

    def _report(self, msg: str, culprits: list[int], kind: str) -> None:
        d = os.environ.get(LAUNCH_DIR_ENV)
        if not d:
            return
        try:
            p = Path(d) / f"rank{self.ctx.rank}.json"
            p.write_text(json.dumps({"rank": self.ctx.rank, "kind": kind, "culprits": culprits, "message": msg}))
        except OSError:
            pass


def install_test_faults(model: Any, rank: int) -> None:
    """Test-only: make this rank die or hang after N model forwards (see the module docstring)."""
    mode = next((m for m in ("kill", "hang", "raise") if os.environ.get(f"MOEBENCH_TEST_{m.upper()}_RANK") == str(rank)),
                None)
    if mode is None:
        return
    after = int(os.environ.get("MOEBENCH_TEST_KILL_AFTER_STEPS", "0"))

    def pre_hook(_mod: Any, _args: Any) -> None:
        _TEST_STEPS[0] += 1
        if _TEST_STEPS[0] <= after:
            return
        stamp = os.environ.get("MOEBENCH_TEST_FAULT_STAMP")
        if stamp:  # when the fault happened, so a test can time the reaction rather than the whole run
            Path(stamp).write_text(repr(time.time()))
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "raise":
            raise RuntimeError(f"test fault on rank {rank}")
        while True:
            time.sleep(1)

    model.register_forward_pre_hook(pre_hook)
