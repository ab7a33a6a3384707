"""Routing overrides give the distributions they promise; the load counter sees what the model routed."""

from __future__ import annotations

import pytest
import torch

from moebench.errors import BadInput
from moebench.routing import (
    LoadCounter, balancedness, install_routing, make_route_override, parse_routing, per_ep_rank,
)


def route(spec: str, t: int = 4096, e: int = 8, k: int = 2, rank: int = 0):
    ov = make_route_override(spec, e, k, seed=0, rank=rank)
    logits = torch.randn(t, e)
    w, ids = logits.softmax(-1).topk(k, -1)
    w = w / w.sum(-1, keepdim=True)
    return ov(logits, w, ids)


def test_hot_puts_every_token_on_the_hot_expert_first():
    w, ids = route("hot:0")
    assert (ids[:, 0] == 0).all()
    assert (ids[:, 1] != 0).all()  # K distinct experts
    counts = torch.bincount(ids.reshape(-1), minlength=8).tolist()
    assert counts[0] == 4096 and balancedness(counts) == pytest.approx(0.25)
    assert torch.allclose(w.sum(-1), torch.ones(4096))  # the router's total weight per token is kept


def test_uniform_is_balanced_with_enough_tokens():
    _, ids = route("uniform")
    assert (ids[:, 0] != ids[:, 1]).all()
    counts = torch.bincount(ids.reshape(-1), minlength=8).tolist()
    assert balancedness(counts) >= 0.9
    assert balancedness(per_ep_rank(counts, 4)) >= 0.9


def test_zipf_popularity_falls_with_rank():
    _, ids = route("zipf:1.2", t=20000, e=16, k=4)
    counts = torch.bincount(ids.reshape(-1), minlength=16).tolist()
    assert counts[0] > counts[1] > counts[3] > counts[15]
    assert all((row.unique().numel() == 4) for row in ids[:50])
    _, ids0 = route("zipf:0", t=20000, e=16, k=4)  # s = 0 is uniform
    assert balancedness(torch.bincount(ids0.reshape(-1), minlength=16).tolist()) >= 0.9


def test_ranks_draw_different_reproducible_streams():
    a, b, a2 = route("uniform", rank=0)[1], route("uniform", rank=1)[1], route("uniform", rank=0)[1]
    assert torch.equal(a, a2) and not torch.equal(a, b)


def test_bad_specs():
    assert parse_routing("model") == ("model", None) and make_route_override("model", 8, 2, seed=0, rank=0) is None
    with pytest.raises(BadInput, match="does not exist"):
        make_route_override("hot:8", 8, 2, seed=0, rank=0)
    with pytest.raises(BadInput):
        parse_routing("hot")


def test_install_routing_and_count_load_on_a_real_model():
    from moebench.models import load

    model = load("mixtral:debug", layers=2)
    counter = LoadCounter(2, 8, "cpu")
    for blk in model.layers:
        blk.ffn.load_observer = counter
    restore = install_routing(model, "hot:3", seed=0, rank=0)
    with torch.no_grad():
        model(torch.randint(0, model.cfg.vocab_size, (2, 16)))
    counter.step_done()
    counts = counter.counts()
    assert [row[3] for row in counts] == [32, 32]  # every one of the 32 tokens, in both layers
    assert all(sum(row) == 64 for row in counts)
    restore()
    assert all(blk.ffn.route_override is None for blk in model.layers)
    assert install_routing(load("llama3:debug", layers=1), "hot:0", seed=0, rank=0)() is None  # dense: no-op
