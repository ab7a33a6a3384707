"""Will this model fit? Bytes a run needs (weights of the layers built + KV cache + working set), checked
against what the device has free before anything is allocated.

The working set is an upper bound of the largest transients of one forward over the whole prompt: the
residual stream and projections, the widest FFN intermediate, fp32 attention scores, fp32 logits for every
position, plus a margin for the allocator and the runtime.
"""

from __future__ import annotations

import os

from moebench.errors import BadInput
from moebench.models.config import ArchConfig

GB = 1e9
RUNTIME_MARGIN_BYTES = 512 * 2**20  # allocator slack, the torch runtime, Python objects
WEIGHT_MARGIN = 0.03  # fragmentation and per-tensor overhead, as a fraction of the weights


def working_set_bytes(cfg: ArchConfig, *, batch: int, max_seq: int, dtype_bytes: int, fused_attention: bool = False) -> int:
    tokens = batch * max_seq
    h, nh = cfg.hidden_size, cfg.num_attention_heads
    if cfg.attention == "mla":  # expanded keys and values of every cached token during prefill
        attn = nh * (2 * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) + cfg.v_head_dim)
    else:
        attn = (nh + 2 * cfg.num_key_value_heads) * cfg.head_dim
    ffn = 2 * cfg.intermediate_size
    if cfg.is_moe:
        moe = cfg.top_k * (3 * cfg.moe_intermediate_size + 2 * h) + 2 * cfg.n_shared_experts * cfg.moe_intermediate_size
        ffn = max(ffn if cfg.first_k_dense else 0, moe)
    per_token = (6 * h + attn + ffn) * dtype_bytes
    # scores and probabilities, fp32; fused (flash / memory-efficient) attention on a GPU never materialises them
    scores = 0 if fused_attention else 2 * batch * nh * max_seq * max_seq * 4
    logits = 2 * batch * cfg.vocab_size * 4  # the engine asks for the last position's logits only (last_only)
    return tokens * per_token + scores + logits


def required_bytes(cfg: ArchConfig, *, batch: int, max_seq: int, dtype_bytes: int, fused_attention: bool = False) -> int:
    """Bytes to build `cfg` (its num_hidden_layers layers, plus embedding and LM head) and run `batch`
    sequences of up to `max_seq` tokens: weights + KV cache + working set + margins."""
    weights = cfg.weight_bytes(dtype_bytes)
    kv = cfg.kv_bytes(batch, max_seq, dtype_bytes)
    work = working_set_bytes(cfg, batch=batch, max_seq=max_seq, dtype_bytes=dtype_bytes, fused_attention=fused_attention)
    return int(weights * (1 + WEIGHT_MARGIN) + kv + work + RUNTIME_MARGIN_BYTES)


AVAILABLE_ENV = "MOEBENCH_TEST_AVAILABLE_BYTES"  # test-only: the free memory a test asserts against, not the machine's


def available_bytes(device: str) -> int:
    """Free memory now: MemAvailable from /proc/meminfo on CPU, cudaMemGetInfo's free bytes on a GPU."""
    if os.environ.get(AVAILABLE_ENV):
        return int(os.environ[AVAILABLE_ENV])
    if device.startswith("cuda"):
        import torch

        dev = torch.device(device)
        free, _total = torch.cuda.mem_get_info(dev)
        # blocks torch's caching allocator holds but does not use are free for this process too
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def largest_layers_that_fit(cfg: ArchConfig, *, batch: int, max_seq: int, dtype_bytes: int, available: int,
                            fused_attention: bool = False) -> int:
    """The largest `layers:` N (0 if not even one) whose run needs no more than `available` bytes."""
    full = cfg.full()
    best = 0
    for n in range(1, full.num_hidden_layers + 1):
        if required_bytes(full.with_layers(n), batch=batch, max_seq=max_seq, dtype_bytes=dtype_bytes,
                          fused_attention=fused_attention) > available:
            break
        best = n
    return best


def _largest(fits, hi: int) -> int:
    """The largest n in [1, hi] with fits(n) (fits is monotone: true up to some n), 0 if none."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_fits(name: str, cfg: ArchConfig, *, batch: int, max_seq: int, dtype_bytes: int, device: str,
               ranks_here: int = 1) -> None:
    """Raise BadInput (exit 3) in one line when the run cannot fit on `device`, naming the bytes and what would
    fit: a smaller `layers:` when the depth is the problem, else the largest batch size, else the longest
    sequence (prompt + output tokens) — so an absurd batch or prompt is blamed, not the layers. On CPU the
    `ranks_here` ranks of this host share its memory, and each builds the whole model."""
    fused = device.startswith("cuda")

    def need(c: ArchConfig, b: int, s: int) -> int:
        return required_bytes(c, batch=b, max_seq=s, dtype_bytes=dtype_bytes, fused_attention=fused)

    shared = ranks_here if device == "cpu" and ranks_here > 1 else 1
    have = available_bytes(device) // shared
    needed = need(cfg, batch, max_seq)
    if needed <= have:
        return
    fit = largest_layers_that_fit(cfg, batch=batch, max_seq=max_seq, dtype_bytes=dtype_bytes, available=have,
                                  fused_attention=fused)
    what = f"{name} with layers: {cfg.num_hidden_layers}" if cfg.full_num_layers else name
    if fit:
        hint = f"the largest layers: that fits is {fit}"
    elif (b := _largest(lambda b: need(cfg, b, max_seq) <= have, batch)) > 0:
        hint = f"batch size {batch} does not fit: the largest that fits is {b}"
    elif (n := _largest(lambda n: need(cfg, 1, n) <= have, max_seq)) > 0:
        hint = f"{max_seq} tokens per sequence (prompt + output) do not fit: at batch size 1 at most {n} do"
    else:
        hint = "not even layers: 1 fits (embedding, LM head and one layer)"
    gb = lambda n: f"{n / GB:.1f}" if n < 1e4 * GB else f"{n / GB:.3g}"  # noqa: E731 - 62.8 GB, 6.4e+16 GB
    where = f"{device} has {gb(have)} GB available" if shared == 1 else \
        f"{device} has {gb(have * shared)} GB available for its {shared} ranks, {gb(have)} GB each"
    raise BadInput(f"{what} needs {gb(needed)} GB but {where}; {hint}")
