"""Batched prefill then greedy KV-cache decode, timed per phase: the samples every latency metric comes from."""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from moebench.energy import NOT_MEASURED, open_meter
from moebench.engine.device import Timer, sync
from moebench.machine import open_contention


@dataclass
class GenerationSamples:
    """Per timed repeat: TTFT and TPOT of the batch (ms), the energy of the generation (J, every device of
    this rank; empty where not measured) and the wall time between its two counter reads (s: how long the
    counter was read over, which says how coarse the reading is); per decode step: inter-token latency (ms).
    `contention`: the timed repeats' moebench.machine parts, one per rank."""

    ttft_ms: list[float] = field(default_factory=list)
    tpot_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)
    decode_mode: str = "eager"  # or "cuda_graph"
    note: Optional[str] = None
    energy_j: list[float] = field(default_factory=list)
    energy_source: str = NOT_MEASURED
    energy_scope: Optional[str] = None
    energy_window_s: list[float] = field(default_factory=list)
    contention: list[dict[str, Any]] = field(default_factory=list)


def prompt_ids(batch: int, prompt: int, vocab: int, seed: int, device: str) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (batch, prompt), generator=g).to(device)


class DecodeGraph:
    """One decode step captured in a CUDA graph: static token ids, position tensor and KV cache, so a replay
    is one launch instead of hundreds (eager small-batch decode is bound by the host launching kernels).

    Capture needs static shapes: attention reads the whole cache buffer under a mask built from the position
    tensor (models' static-shape decode path), and the kernels make no host syncs.
    """

    def __init__(self, model, cache, batch: int, device: str):
        self.ids_B1 = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():  # warm-up off the capture stream (Triton compiles, cuBLAS plans)
            for _ in range(2):
                model(self.ids_B1, cache=cache, start=self.pos, last_only=True)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.logits = model(self.ids_B1, cache=cache, start=self.pos, last_only=True)
        # The warm-up and capture wrote garbage at position 0; every generation starts with a prefill over it.

    def __call__(self, ids_B1: torch.Tensor, pos: int) -> torch.Tensor:
        self.ids_B1.copy_(ids_B1)
        self.pos.fill_(pos)
        self.graph.replay()
        return self.logits


@torch.no_grad()
def generate_once(
    model, ids_BS: torch.Tensor, cache, output_tokens: int, timer: Timer, graph: Optional[DecodeGraph] = None
) -> tuple[float, list[float]]:
    """One request batch end to end: (TTFT ms, decode step ms list). Greedy argmax keeps every step data-dependent."""
    prompt = ids_BS.shape[1]
    ttft, logits = timer.time(lambda: model(ids_BS, cache=cache, start=0, last_only=True))
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    steps = []
    for i in range(output_tokens - 1):
        if graph is not None:
            t, logits = timer.time(lambda: graph(nxt, prompt + i))
        else:
            t, logits = timer.time(lambda: model(nxt, cache=cache, start=prompt + i, last_only=True))
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        steps.append(t)
    return ttft, steps


class GenerationBench:
    """The timed generations of one model × batch: its KV cache, its decode graph if any, and the samples so far.

    `run(n)` does n generations (timed unless `timed=False`, i.e. warm-up). A sequential schedule runs one
    bench to the end; an interleaved one (engine.runner) lets several benches take turns, one repeat each.
    With `cuda_graph` (single GPU), decode steps replay a captured graph; if capture fails the run goes on
    eagerly and says why in `samples.note`. `barrier` (distributed runs) lines the ranks up before each repeat.
    Every timed repeat reads the energy counter (moebench.energy) and the machine's CPU (moebench.machine)
    just outside its timed region, after the device has synchronised.
    """

    def __init__(self, model, ids_BS: torch.Tensor, *, output: int, device: str,
                 barrier: Optional[Callable[[], None]] = None, cuda_graph: bool = False):
        self.model, self.ids_BS, self.output, self.device, self.barrier = model, ids_BS, output, device, barrier
        self.timer = Timer(device)
        self.cache = model.new_cache(ids_BS.shape[0], ids_BS.shape[1] + output)
        self.samples = GenerationSamples()
        gpus = [torch.cuda.current_device()] if device == "cuda" else []
        self.meter = open_meter(device, gpus)
        if self.meter is not None:
            self.samples.energy_source, self.samples.energy_scope = self.meter.source, self.meter.scope
        self.contention = open_contention(device, gpus)
        self.graph = None
        if cuda_graph and device == "cuda":
            try:
                self.graph = DecodeGraph(model, self.cache, ids_BS.shape[0], device)
                self.samples.decode_mode = "cuda_graph"
            except Exception as exc:  # noqa: BLE001 - e.g. an op that syncs with the host: decode eagerly, say why
                torch.cuda.synchronize()
                self.samples.note = f"CUDA graph capture failed, decode ran eagerly: {str(exc).splitlines()[0]}"

    def run(self, n: int, *, timed: bool = True) -> None:
        if timed:
            self.contention.gpu_sample()
        for _ in range(n):
            if self.barrier is not None:
                self.barrier()
            sync(self.device)
            e0 = self.meter.read() if timed and self.meter is not None else None
            t0 = time.perf_counter()
            with self.contention.window() if timed else contextlib.nullcontext():
                gc.disable()  # like timeit: no garbage-collector pause inside a timed generation
                try:
                    ttft, steps = generate_once(self.model, self.ids_BS, self.cache, self.output, self.timer,
                                                self.graph)
                finally:
                    gc.enable()
                sync(self.device)
            if timed:
                e1 = self.meter.read() if self.meter is not None else None
                self.samples.energy_window_s.append(time.perf_counter() - t0)
                self.samples.ttft_ms.append(ttft)
                self.samples.tpot_ms.append(sum(steps) / len(steps))
                self.samples.itl_ms.extend(steps)
                if self.meter is not None:
                    self._add_energy(self.meter.joules(e0, e1))
        if timed:
            self.contention.gpu_sample()
            self.samples.contention = [self.contention.parts()]

    def _add_energy(self, joules: Optional[float]) -> None:
        if joules is None:  # a counter failed: no repeat's energy can be trusted to be paired with its timing
            self.meter = None
            self.samples.energy_j, self.samples.energy_source, self.samples.energy_scope = [], NOT_MEASURED, None
        else:
            self.samples.energy_j.append(joules)


def time_generation(
    model,
    *,
    batch: int,
    prompt: int,
    output: int,
    warmup: int,
    repeats: int,
    device: str,
    seed: int,
    barrier: Optional[Callable[[], None]] = None,
    ids_BS: Optional[torch.Tensor] = None,
    cuda_graph: bool = False,
) -> GenerationSamples:
    """Warm up, then `repeats` timed generations of one model × batch (the sequential schedule)."""
    if ids_BS is None:
        ids_BS = prompt_ids(batch, prompt, model.cfg.vocab_size, seed, device)
    bench = GenerationBench(model, ids_BS, output=output, device=device, barrier=barrier, cuda_graph=cuda_graph)
    bench.run(warmup, timed=False)
    bench.run(repeats)
    return bench.samples
