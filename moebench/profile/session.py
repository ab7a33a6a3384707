"""`ProfileSession`: everything a profiled (model, batch size) needs, installed and removed in a few engine lines.

    prof = ProfileSession(wl, model, rank=rank, world_size=ws, device=dev, group=ep_group, trace_dir=d)
    with prof.paused():                      # same run, profiling off: the overhead baseline
        plain = time_generation(...)
    samples = time_generation(...)           # every forward is bracketed and every region timed
    section = prof.finish(overhead=(batch, plain.tpot_ms, samples.tpot_ms))  # collective; dict on rank 0

`group`: the process group the collectives run on (default: every rank); `groups`: per phase, where they differ
(e.g. {"dispatch": ep, "combine": ep, "allreduce": tp}); `control_group`: a gloo group for clock sync and
gathering (default: the world group when it is gloo, else a new gloo group).

Constructing it (collective when world_size > 1): installs the region recorder, the routing override (workload
`routing`), the expert-load observer, forward hooks that bracket each forward as a step (prefill when the input
has more than one position, decode otherwise), the NVML sampler, and aligns clocks with rank 0. The first
`timing.warmup × output_tokens` profiled forwards are warm-up (recorded, not tabulated); a Kineto trace covers
up to `trace_steps` forwards, inside the warm-up when there is one, written to `trace_dir/trace_rank{r}.json`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from moebench.profile import regions
from moebench.profile.nvml import NvmlSampler, energy_summary
from moebench.profile.recorder import TimelineRecorder
from moebench.routing import LoadCounter, install_routing, moe_modules
from moebench.profile.summary import overhead as overhead_stats
from moebench.profile.summary import summarize


# Kineto's own C++ log lines at every profiler start and stop ("USDT:… profiler_start"): not governed by
# KINETO_LOG_LEVEL, and on CPU half of what a profiled run printed.
KINETO_NOISE = b"USDT:"


@contextlib.contextmanager
def quiet_kineto() -> Iterator[None]:
    """Hold what reaches file descriptor 2 (C++ logging included) while the profiler starts or stops, then write
    back to stderr every line but Kineto's USDT notices: a real warning or error still reaches the user."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = b"".join(line for line in held.read().splitlines(keepends=True)
                            if not line.startswith(KINETO_NOISE))
            if kept:
                os.write(2, kept)


class ProfileSession:
    def __init__(
        self,
        wl,
        model,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: str = "cpu",
        group: Any = None,
        groups: Optional[dict[str, Any]] = None,
        control_group: Any = None,
        trace_dir: Optional[str | Path] = None,
        trace_steps: int = 6,
        warmup_forwards: Optional[int] = None,
        token_slice: Optional[int] = None,
    ):
        self.wl, self.model, self.rank, self.world_size, self.device = wl, model, rank, world_size, device
        self.token_slice = rank if token_slice is None else token_slice  # ranks that share one route the same tokens
        self.routing = getattr(wl, "routing", "model")
        self.warmup_forwards = (wl.timing.warmup * wl.scenario.output_tokens if warmup_forwards is None
                                else warmup_forwards)
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self.trace_steps = trace_steps
        self.dist = world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
        self.cpu_group = (control_group if control_group is not None else self._cpu_group()) if self.dist else None
        self.peers = self._peers(group, groups)
        self.recorder = TimelineRecorder(device, rank)
        self._paused = False
        self._n_forward = 0
        self._kineto = None
        self._trace_path: Optional[Path] = None
        self._trace_window = self._pick_trace_window()
        self._installed = False
        self._undo: list = []
        self.tokens = 0
        self.offsets_ns, self.rtts_ns = [0] * world_size, [0] * world_size
        self.pingpong_ns = [0] * world_size
        self._start()

    # -- setup / teardown -------------------------------------------------------------------------------------
    def _cpu_group(self):
        """Clock sync and object gathering run over gloo (CPU tensors, host clocks) whatever the data backend."""
        dist = torch.distributed
        return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def _peers(self, group: Any, groups: Optional[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
        """Global ranks each phase's collectives span: `groups` by phase, `group` for the rest, else everyone."""
        def ranks_of(g: Any) -> tuple[int, ...]:
            if not self.dist or g is None:
                return tuple(range(self.world_size))
            return tuple(torch.distributed.get_process_group_ranks(g))

        out = {"*": ranks_of(group)}
        for phase, g in (groups or {}).items():
            out[phase] = ranks_of(g)
        return out

    def _pick_trace_window(self) -> Optional[tuple[int, int]]:
        if self.trace_dir is None or self.trace_steps <= 0:
            return None
        w = self.warmup_forwards
        if w >= 2:  # skip the very first forward (one-off allocations), stay inside the warm-up
            return 1, min(1 + self.trace_steps, w)
        return 0, self.trace_steps

    def _start(self) -> None:
        cfg = self.model.cfg
        self._moe = moe_modules(self.model)
        self.load = LoadCounter(cfg.num_hidden_layers, cfg.n_routed_experts, self.device) if self._moe else None
        first = self._moe[0] if self._moe else None
        self.shard = ((int(first.expert_offset), int(first.w13_E2FD.shape[0]))
                      if first is not None and hasattr(first, "w13_E2FD") else None)
        self.clock_basis = "single rank"
        if self.dist:
            from moebench.profile.clock import ping_pong_offsets

            self.pingpong_ns, self.rtts_ns = ping_pong_offsets(self.cpu_group)
            hosts: list = [None] * self.world_size
            torch.distributed.all_gather_object(hosts, socket.gethostname(), group=self.cpu_group)
            if len(set(hosts)) == 1:  # one CLOCK_MONOTONIC for every rank: the true offset is 0
                self.offsets_ns = [0] * self.world_size
                self.clock_basis = "shared host clock (one host); the ping-pong estimate is kept as a check"
            else:
                self.offsets_ns = list(self.pingpong_ns)
                self.clock_basis = "ping-pong with rank 0 at start (min-rtt round)"
        self._prev_recorder = regions.get_recorder()
        regions.set_recorder(self.recorder)
        self._undo.append(lambda: regions.set_recorder(self._prev_recorder))
        if not any(m.route_override is not None for m in self._moe):
            self._undo.append(install_routing(self.model, self.routing, seed=self.wl.seed, rank=self.rank))
        prev_obs = [m.load_observer for m in self._moe]
        for m in self._moe:
            m.load_observer = self.load
        self._undo.append(lambda: [setattr(m, "load_observer", p) for m, p in zip(self._moe, prev_obs)])
        h1 = self.model.register_forward_pre_hook(self._pre_forward)
        h2 = self.model.register_forward_hook(self._post_forward)
        self._undo.append(h1.remove)
        self._undo.append(h2.remove)
        dev_index = torch.cuda.current_device() if self.device.startswith("cuda") else None
        self.nvml = NvmlSampler(dev_index).start()
        self._t0 = time.perf_counter()
        self._installed = True

    def close(self) -> None:
        """Remove every hook and stop the sampler and any running trace (idempotent; no collectives)."""
        if not self._installed:
            return
        self._stop_kineto()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._installed = False
        self._wall_s = time.perf_counter() - self._t0
        self._nvml_out = self.nvml.stop()

    def __enter__(self) -> "ProfileSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Run without profiling (no regions, steps, load counting or trace); the routing override stays, so the
        plain run does the same work."""
        self._paused = True
        regions.set_recorder(self._prev_recorder)
        if self.load is not None:
            self.load.enabled = False
        try:
            yield
        finally:
            self._paused = False
            if self._installed:
                regions.set_recorder(self.recorder)
            if self.load is not None:
                self.load.enabled = True

    # -- per forward ----------------------------------------------------------------------------------------
    def _pre_forward(self, module, args) -> None:
        if self._paused:
            return
        ids = args[0] if args else None
        b, s = (ids.shape[0], ids.shape[1]) if ids is not None and ids.dim() == 2 else (1, 1)
        i = self._n_forward
        if self._trace_window and i == self._trace_window[0]:
            self._start_kineto()
        self.recorder.step_begin("prefill" if s > 1 else "decode", b * s, timed=i >= self.warmup_forwards)

    def _post_forward(self, module, args, output) -> None:
        if self._paused:
            return
        step = self.recorder.step_end()
        if step is not None:
            self.tokens += step.tokens
            if self.load is not None:
                self.load.step_done(keep=step.timed)
        self._n_forward += 1
        if self._trace_window and self._n_forward == self._trace_window[1]:
            self._stop_kineto()

    # -- Kineto ---------------------------------------------------------------------------------------------
    def _start_kineto(self) -> None:
        acts = [torch.profiler.ProfilerActivity.CPU]
        if self.device.startswith("cuda"):
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        self._kineto = torch.profiler.profile(activities=acts, record_shapes=True)
        with quiet_kineto():
            self._kineto.start()

    def _stop_kineto(self) -> None:
        if self._kineto is None:
            return
        prof, self._kineto = self._kineto, None
        with quiet_kineto():
            prof.stop()
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        self._trace_path = self.trace_dir / f"trace_rank{self.rank}.json"
        prof.export_chrome_trace(str(self._trace_path))

    # -- results --------------------------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        """What this rank contributes to the summary (picklable)."""
        from moebench.profile.trace import analyse_traces

        hta = analyse_traces([self._trace_path])[0] if self._trace_path else None
        return {
            "rank": self.rank,
            "steps": [s.to_wire() for s in self.recorder.steps],
            "peers": self.peers,
            "load_total": self.load.counts() if self.load is not None else None,
            "token_slice": self.token_slice,
            "shard": self.shard,
            "nvml": self._nvml_out,
            "tokens": self.tokens,
            "wall_s": self._wall_s,
            "trace": {"path": str(self._trace_path) if self._trace_path else None, "window": self._trace_window,
                      "overlaps_timed": bool(self._trace_window and self._trace_window[1] > self.warmup_forwards),
                      "hta": hta},
        }

    def finish(self, overhead: Optional[tuple[int, list[float], list[float]]] = None) -> Optional[dict[str, Any]]:
        """Stop, gather every rank's records to rank 0 and summarise. Collective when distributed: every rank
        calls it; rank 0 gets the `profile` section, the others None.

        `overhead`: (batch, plain TPOT ms samples, profiled TPOT ms samples) from the side-by-side runs."""
        self.close()
        mine = self.payload()
        if self.dist:
            got: Optional[list] = [None] * torch.distributed.get_world_size() if self.rank == 0 else None
            torch.distributed.gather_object(mine, got, dst=0, group=self.cpu_group)
            if self.rank != 0:
                return None
            ranks = got
        else:
            ranks = [mine]
        nv = [r["nvml"] for r in ranks]
        extra = {
            "overhead": overhead_stats(*overhead) if overhead else None,
            "energy": energy_summary(nv, sum(r["tokens"] for r in ranks), max(r["wall_s"] for r in ranks)),
            "trace": {"files": [r["trace"]["path"] for r in ranks], "window_forwards": ranks[0]["trace"]["window"],
                      "overlaps_timed": ranks[0]["trace"]["overlaps_timed"],
                      "hta": [r["trace"]["hta"] for r in ranks]},
            "warmup_forwards": self.warmup_forwards,
        }
        return summarize(ranks, offsets_ns=self.offsets_ns, rtts_ns=self.rtts_ns, pingpong_ns=self.pingpong_ns,
                         clock_basis=self.clock_basis, routing=self.routing, extra=extra)
