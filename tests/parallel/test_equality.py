"""Expert and tensor parallelism (gloo, 4 CPU processes) give the single-process logits for the same weights.

One spawn of 4 ranks runs every case (spawning is the expensive part on 2 cores); each test then checks its
case on every rank: prefill logits at every position and three KV-cache decode steps, fp32 allclose.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.parallel._equality import CASES, worker

WORLD = 4
ATOL = 1e-4  # logits are O(1); summation order differs (all-to-all partial sums, all-reduce), nothing else


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _registered(name: str) -> bool:
    from moebench.models import registry

    return name.split(":")[0] in registry().names()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("equality")
    cases = [c for c, (model, _) in CASES.items() if _registered(model)]
    mp.start_processes(worker, args=(WORLD, _free_port(), str(out), cases), nprocs=WORLD, join=True,
                       start_method="spawn")
    per_rank = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for r, res in enumerate(per_rank):
        assert "error" not in res, f"rank {r} failed:\n{res['error']}"
    return per_rank


def _check(results, case: str) -> None:
    model = CASES[case][0]
    if not _registered(model):
        pytest.skip(f"model family {model.split(':')[0]!r} is not registered in this tree yet")
    for r, res in enumerate(results):
        got = res[case]
        assert got["ref_max_abs"] > 0.1, "reference logits are degenerate"
        for step, d in enumerate(got["max_abs_diff"]):
            assert d <= ATOL, f"{case}: rank {r} rows {got['rows']} step {step}: max |diff| {d:.2e} > {ATOL}"


@pytest.mark.parametrize("case", ["mixtral-ep4", "mixtral-ep2", "deepseek-v3-ep4", "deepseek-v3-ep2", "qwen3-moe-ep4"])
def test_expert_parallel_equals_single_process(results, case):
    _check(results, case)


def test_tensor_parallel_llama_tp2_equals_tp1(results):
    assert all(res["llama3-tp2"]["dense"] == 2 for res in results)
    _check(results, "llama3-tp2")


@pytest.mark.parametrize("case", ["mixtral-ep2-tp2", "deepseek-v3-ep2-tp2", "gpt-oss-ep2-tp2"])
def test_expert_and_tensor_parallel_together(results, case):
    """EP=2 × TP=2: heads (GQA, MLA, gpt-oss sinks and biases) split over TP, experts over EP."""
    _check(results, case)


@pytest.mark.parametrize("case", ["mixtral-ep4-attn-tensor", "llama3-tp4-attn-tensor"])
def test_attention_tensor_parallel_over_expert_ranks(results, case):
    """`attention: tensor`: heads split over expert × tensor ranks; each EP rank dispatches a chunk of tokens."""
    assert all(res[case]["dense"] == 4 for res in results)
    _check(results, case)
