"""Disaggregated prefill/decode pools: the system runs at its slower pool, decode steps carry no prefill, and the
prompt's KV cache pays a hand-off between the pools."""

from __future__ import annotations

import pytest

from moebench.projection import Assumptions, Layout, ServingScenario, device_for, evaluate
from moebench.projection.disagg import balanced, pools


def test_balanced_pools_keep_the_decode_pool_busy_with_the_fewest_prefill_instances(cfgs):
    cfg, dev = cfgs["deepseek-v3:671b"], device_for("h200_sxm")
    sc, a = ServingScenario(8192, 1024, weight_dtype="fp8"), Assumptions()
    kw = dict(prefill_layout=Layout(8, 8, 1), decode_layout=Layout(16, 1, 16), decode_batch=1024)
    sys_ = balanced(cfg, dev, sc, a, **kw)
    assert sys_.prefill_requests_per_s >= sys_.decode_requests_per_s
    assert sys_.requests_per_s == pytest.approx(sys_.decode_requests_per_s)
    if sys_.prefill_instances > 1:
        fewer = pools(cfg, dev, sc, a, prefill_instances=sys_.prefill_instances - 1, **kw)
        assert fewer.prefill_requests_per_s < fewer.decode_requests_per_s  # the prefill pool would bind
    assert sys_.n_gpus == 8 * sys_.prefill_instances + 16
    assert sys_.per_gpu("total") == pytest.approx(sys_.requests_per_s * (8192 + 1024) / sys_.n_gpus)


def test_a_decode_pool_is_not_slowed_by_newcomers_prefill(cfgs):
    cfg, dev = cfgs["llama3:70b"], device_for("h100_sxm")
    sc, lay = ServingScenario(8192, 1024, weight_dtype="fp8"), Layout(4, 4, 1)
    colocated = evaluate(cfg, lay, dev, sc, Assumptions(serving="continuous"), 32)
    split = pools(cfg, dev, sc, Assumptions(), prefill_layout=lay, decode_layout=lay, decode_batch=32)
    assert split.tpot_ms < colocated.tpot_ms
    assert split.ttft_ms > split.prefill.time_ms  # the KV hand-off


def test_the_kv_hand_off_crosses_the_nic_between_domains(cfgs):
    cfg, dev = cfgs["llama3:70b"], device_for("h100_sxm")
    sc = ServingScenario(8192, 256, weight_dtype="fp8")
    inside = pools(cfg, dev, sc, Assumptions(), prefill_layout=Layout(4, 4, 1), decode_layout=Layout(4, 4, 1),
                   decode_batch=8)
    across = pools(cfg, dev, sc, Assumptions(), prefill_layout=Layout(8, 8, 1), decode_layout=Layout(8, 8, 1),
                   decode_batch=8)
    assert across.transfer_ms > inside.transfer_ms
    # two 4-GPU prefill instances and a 4-GPU decode instance no longer fit one 8-GPU domain: the NIC again
    three = pools(cfg, dev, sc, Assumptions(), prefill_layout=Layout(4, 4, 1), decode_layout=Layout(4, 4, 1),
                  decode_batch=8, prefill_instances=2)
    # (each of the 4 decode GPUs receives twice the share an 8-GPU decode instance's do)
    assert three.transfer_ms == pytest.approx(2 * across.transfer_ms, rel=0.05)
