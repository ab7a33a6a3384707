"""The collectives' link model (projection/comm.py): a switched fabric gives any group the whole per-GPU rate, a
switchless mesh only the links to the group's other members."""

from __future__ import annotations

import pytest

from moebench.projection import comm, device_for
from moebench.projection.presets import Presets, builtin

MB = 8e6


def _bandwidth_ms(dev, group: int, cm=comm.CommModel()) -> float:
    return comm.all_reduce_ms(MB, group, dev, cm) - cm.alpha_scale_up_us / 1e3


def test_a_pair_on_the_infinity_fabric_mesh_has_one_link_of_seven():
    mi300x, h100 = device_for("mi300x"), device_for("h100_sxm")
    assert mi300x.scale_up_mesh and not h100.scale_up_mesh
    link = mi300x.scale_up_bytes_per_s / 7 * comm.CommModel().link_eff  # 64 GB/s per xGMI link
    assert _bandwidth_ms(mi300x, 2) == pytest.approx(2 * 0.5 * MB / link * 1e3)
    # the whole mesh (TP8) reaches the catalog's per-GPU rate, as does any group behind NVSwitch
    up = mi300x.scale_up_bytes_per_s * comm.CommModel().link_eff
    assert _bandwidth_ms(mi300x, 8) == pytest.approx(2 * 7 / 8 * MB / up * 1e3)
    assert _bandwidth_ms(h100, 2) == pytest.approx(2 * 0.5 * MB / (h100.scale_up_bytes_per_s * 0.8) * 1e3)
    # a pipeline hand-off to one peer: one link
    assert comm.p2p_ms(MB, False, mi300x, comm.CommModel()) == pytest.approx(8e-3 + MB / link * 1e3)


def test_the_vendor_link_factor_scales_only_the_bandwidth_term():
    dev = device_for("mi300x")
    base = Presets({"amd.compute": 0.7, "amd.memory": 0.8}).assumptions(dev)
    slow = Presets({"amd.compute": 0.7, "amd.memory": 0.8, "amd.link": 0.5}).assumptions(dev)
    assert slow.comm.link_eff == pytest.approx(base.comm.link_eff * 0.5)
    assert slow.comm.alpha_scale_up_us == base.comm.alpha_scale_up_us
    assert _bandwidth_ms(dev, 8, slow.comm) == pytest.approx(2 * _bandwidth_ms(dev, 8, base.comm))
    # never beyond the line rate, whatever the fit says
    fast = Presets({"amd.compute": 0.7, "amd.memory": 0.8, "amd.link": 2.0}).assumptions(dev)
    assert fast.comm.link_eff == 1.0
    assert "amd.link" in builtin().params
