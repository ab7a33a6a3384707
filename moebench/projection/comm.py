"""Alpha–beta models of the collectives MoE serving uses, by message size and link.

time = α + bytes on the slowest link / (link bandwidth × efficiency). A group that fits in one scale-up
domain (NVLink / Infinity Fabric: 8 GPUs on HGX, 72 on NVL72) talks over it; a wider group also crosses the
scale-out NIC, which is usually 9–18× slower and then sets the time. Bandwidths are per GPU, one direction.
"""

from __future__ import annotations

from dataclasses import dataclass

from moebench.projection.device import Device


@dataclass(frozen=True)
class CommModel:
    """The link side of the assumptions (defaults: see docs/projection.md)."""

    link_eff: float = 0.8  # NCCL/DeepEP reach ~75–90 % of NVLink and NIC line rate on large messages
    alpha_scale_up_us: float = 8.0  # one collective inside the domain (small-message latency)
    alpha_scale_out_us: float = 20.0  # one collective that crosses the NIC (RDMA round trips)


def _links(dev: Device, group: int, cm: CommModel) -> tuple[float, float, int]:
    """(scale-up B/s, scale-out B/s, GPUs of the group inside one domain), after efficiency."""
    d = min(group, max(dev.domain_size, 1))
    up = (dev.scale_up_bytes_per_s or dev.scale_out_bytes_per_s or dev.hbm_bytes_per_s) * cm.link_eff
    out = (dev.scale_out_bytes_per_s or up / cm.link_eff) * cm.link_eff
    if dev.scale_up_mesh and dev.scale_up_bytes_per_s and dev.domain_size > 1:
        up *= (d - 1) / (dev.domain_size - 1)  # a mesh: only the links to the group's other members carry its bytes
    return up, out, d


def all_to_all_ms(buffer_bytes: float, group: int, dev: Device, cm: CommModel) -> float:
    """All-to-all where each GPU holds `buffer_bytes` spread evenly over the `group` destinations.

    The 1/group addressed to itself stays put; peers inside the domain go over scale-up, the rest over the NIC,
    both at once, so the slower of the two sets the time.
    """
    if group <= 1 or buffer_bytes <= 0:
        return 0.0
    up, out, in_domain = _links(dev, group, cm)
    t_up = buffer_bytes * (in_domain - 1) / group / up
    t_out = buffer_bytes * (group - in_domain) / group / out
    alpha = cm.alpha_scale_up_us if group <= in_domain else cm.alpha_scale_out_us
    return alpha / 1e3 + max(t_up, t_out) * 1e3


def all_gather_ms(out_bytes: float, group: int, dev: Device, cm: CommModel) -> float:
    """All-gather (or reduce-scatter) whose full result is `out_bytes` per GPU: ring term (n−1)/n · bytes.

    A group wider than the domain goes hierarchically: inside the domain at scale-up speed, then across domains
    on the NIC with 1/domain of the bytes per GPU.
    """
    if group <= 1 or out_bytes <= 0:
        return 0.0
    up, out, d = _links(dev, group, cm)
    t = (d - 1) / d * out_bytes / up
    alpha = cm.alpha_scale_up_us
    if group > d:
        m = group / d
        t += (m - 1) / m * out_bytes / d / out
        alpha = cm.alpha_scale_out_us
    return alpha / 1e3 + t * 1e3


def all_reduce_ms(bytes_: float, group: int, dev: Device, cm: CommModel) -> float:
    """Ring all-reduce = reduce-scatter + all-gather: 2 (n−1)/n · bytes, hierarchical across domains."""
    if group <= 1 or bytes_ <= 0:
        return 0.0
    one = all_gather_ms(bytes_, group, dev, cm)
    alpha = (cm.alpha_scale_up_us if group <= max(dev.domain_size, 1) else cm.alpha_scale_out_us) / 1e3
    return 2 * (one - alpha) + alpha


def p2p_ms(bytes_: float, cross_domain: bool, dev: Device, cm: CommModel) -> float:
    """One GPU sending `bytes_` to one peer (a pipeline stage handing its activations on): over the NIC when the
    peer is in another domain, else over scale-up."""
    if bytes_ <= 0:
        return 0.0
    up, out, _ = _links(dev, 2, cm)
    if cross_domain:
        return cm.alpha_scale_out_us / 1e3 + bytes_ / out * 1e3
    return cm.alpha_scale_up_us / 1e3 + bytes_ / up * 1e3
