"""Batched prefill then greedy KV-cache decode, timed per phase: the samples every latency metric comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from moebench.engine.device import Timer, sync


@dataclass
class GenerationSamples:
    """Per timed repeat: TTFT and TPOT of the batch; per decode step: inter-token latency. All ms."""

    ttft_ms: list[float] = field(default_factory=list)
    tpot_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)


def prompt_ids(batch: int, prompt: int, vocab: int, seed: int, device: str) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (batch, prompt), generator=g).to(device)


@torch.no_grad()
def generate_once(model, ids_BS: torch.Tensor, cache, output_tokens: int, timer: Timer) -> tuple[float, list[float]]:
    """One request batch end to end: (TTFT ms, decode step ms list). Greedy argmax keeps every step data-dependent."""
    prompt = ids_BS.shape[1]
    ttft, logits = timer.time(lambda: model(ids_BS, cache=cache, start=0, last_only=True))
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    steps = []
    for i in range(output_tokens - 1):
        t, logits = timer.time(lambda: model(nxt, cache=cache, start=prompt + i, last_only=True))
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        steps.append(t)
    return ttft, steps


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
) -> GenerationSamples:
    """Warm up, then `repeats` timed generations; `barrier` (distributed runs) lines the ranks up before each."""
    timer = Timer(device)
    if ids_BS is None:
        ids_BS = prompt_ids(batch, prompt, model.cfg.vocab_size, seed, device)
    cache = model.new_cache(batch, prompt + output)
    out = GenerationSamples()
    for r in range(warmup + repeats):
        if barrier is not None:
            barrier()
        sync(device)
        ttft, steps = generate_once(model, ids_BS, cache, output, timer)
        if r >= warmup:
            out.ttft_ms.append(ttft)
            out.tpot_ms.append(sum(steps) / len(steps))
            out.itl_ms.extend(steps)
    return out
