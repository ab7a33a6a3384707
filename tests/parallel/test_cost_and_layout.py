"""Pure pieces of the distributed path: cost counts every rank's GPU-hours; mesh arithmetic; merging ranks."""

from __future__ import annotations

import pytest

from moebench.engine.generate import GenerationSamples
from moebench.engine.records import Peaks, build_record
from moebench.engine.runner import resolve_pricing
from moebench.parallel.expert import chunk_bounds
from moebench.engine.gather import merge_samples
from moebench.parallel.mesh import MeshShape
from moebench.workload import Workload


def _wl(**parallel) -> Workload:
    return Workload.model_validate({
        "name": "t", "models": ["mixtral:debug"], "parallel": parallel,
        "scenario": {"prompt_tokens": 10, "output_tokens": 11, "batch_sizes": [8]},
        "price": {"usd_per_gpu_hour": 2.0},
    })


def test_cost_pays_for_every_rank_gpu_hours():
    """EP=4 at $2/GPU-h: the run pays 4 × $2 = $8 per hour for the deployment's one token stream.

    Two ranks' samples: the slower rank sets each repeat's latency (TTFT 100 ms, TPOT 10 ms).
    Batch 8, output 11: wall = 0.100 + 10 × 0.010 = 0.200 s, 88 output tokens -> 440 tok/s for the deployment,
    110 tok/s per GPU; $/M output = 8 / (440 × 3600) × 1e6 = 5.0505…; one GPU would have cost a quarter.
    """
    from moebench.catalog import get_hardware
    from moebench.models import resolve_name

    _, cfg = resolve_name("mixtral:debug")
    fast = GenerationSamples(ttft_ms=[90.0, 95.0], tpot_ms=[9.0, 8.0], itl_ms=[9.0] * 20)
    slow = GenerationSamples(ttft_ms=[100.0, 100.0], tpot_ms=[10.0, 10.0], itl_ms=[10.0] * 20)
    samples = merge_samples([fast, slow])
    peaks = Peaks(None, None, None, None)

    def record(n_ranks: int):
        pricing = resolve_pricing(_wl(world_size=n_ranks, expert=n_ranks), get_hardware("cpu"))
        assert pricing.n_gpus == n_ranks
        return build_record(name="mixtral:debug", kind="moe", run_cfg=cfg, samples=samples, batch=8, prompt=10,
                            output=11, dtype_bytes=4, pricing=pricing, peaks=peaks, intelligence=None)

    ep4, one = record(4), record(1)
    m = ep4["metrics"]
    assert ep4["cost"]["n_gpus"] == 4
    assert m["output_tokens_per_s"]["median"] == pytest.approx(440.0)
    assert m["output_tokens_per_s_per_gpu"]["median"] == pytest.approx(110.0)
    assert m["usd_per_mtok"]["output"]["median"] == pytest.approx(8 / (440 * 3600) * 1e6)
    assert m["usd_per_mtok"]["output"]["median"] == pytest.approx(4 * one["metrics"]["usd_per_mtok"]["output"]["median"])


def test_merge_takes_the_slowest_rank_per_repeat_and_step():
    a = GenerationSamples(ttft_ms=[1.0, 5.0], tpot_ms=[2.0, 2.0], itl_ms=[1.0, 3.0], energy_window_s=[0.5, 0.9])
    b = GenerationSamples(ttft_ms=[2.0, 4.0], tpot_ms=[1.0, 3.0], itl_ms=[2.0, 2.0], energy_window_s=[0.6, 0.8])
    m = merge_samples([a, b])
    assert (m.ttft_ms, m.tpot_ms, m.itl_ms) == ([2.0, 5.0], [2.0, 3.0], [2.0, 3.0])
    assert m.energy_window_s == [0.6, 0.9]  # how long the slowest rank's counters were read over


def test_layout_groups_and_batch_slices():
    lay = MeshShape(data=2, expert=2, tensor=2)  # rank = (d·2 + e)·2 + t
    assert lay.coords(5) == {"data": 1, "expert": 0, "tensor": 1}
    assert lay.groups("tensor") == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert lay.groups("expert") == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert lay.groups("data") == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert lay.groups("dense") == lay.groups("tensor")
    # attention data-parallel over data × expert: 4 batch slices, TP peers share one
    assert lay.batch_slices == 4 and [lay.batch_slice(r) for r in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    tp_attn = MeshShape(data=2, expert=2, tensor=2, attention="tensor")
    assert tp_attn.groups("dense") == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert tp_attn.batch_slices == 2 and [tp_attn.batch_slice(r) for r in range(8)] == [0] * 4 + [1] * 4


def test_chunks_cover_every_token_once():
    for t in (0, 1, 5, 8):
        for parts in (1, 2, 3, 4):
            spans = [chunk_bounds(t, parts, i) for i in range(parts)]
            assert spans[0][0] == 0 and spans[-1][1] == t
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
