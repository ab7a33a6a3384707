import pytest
import torch

from moebench_kernels import _cbuild, cpu_moe
from moebench_kernels.fused_moe import fused_moe_ref
from tests.kernels.test_fused_moe import layer

needs_kernel = pytest.mark.skipif(not cpu_moe.available(), reason="needs x86-64 AVX2+FMA and a C compiler")


def oracle(x, w13, w2, w, ids, activation="silu", b13=None, b2=None):
    """The torch path in fp64 (fused_moe_ref takes the C kernel only for fp32)."""
    d = [None if t is None else t.double() for t in (x, w13, w2, w, b13, b2)]
    return fused_moe_ref(d[0], d[1], d[2], d[3], ids, activation, d[4], d[5]).float()


CASES = {
    "T=1": dict(T=1, K=2, E=8, D=32, F=16),
    "D, F not multiples of 16 or 8": dict(T=37, K=2, E=8, D=37, F=21),
    "E=384 K=8": dict(T=3, K=8, E=384, D=32, F=16),
    "K past one 256-wide chunk, 7-13 rows per expert": dict(T=40, K=2, E=8, D=520, F=264),
    "D=1 F=1": dict(T=5, K=2, E=3, D=1, F=1),
}


@needs_kernel
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", ["silu", "swiglu_oai"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case, activation, bias):
    x, w13, w2, w, ids, b13, b2 = layer(**CASES[case], dtype=torch.float32, bias=bias)
    if activation == "swiglu_oai":
        x = 4 * x  # push gate and up past the ±7 clamp for some entries
    y = cpu_moe.fused_moe_cpu(x, w13, w2, w, ids, activation, b13, b2)
    torch.testing.assert_close(y, oracle(x, w13, w2, w, ids, activation, b13, b2), atol=2e-5, rtol=2e-5)


@needs_kernel
def test_empty_expert_hot_expert_and_skipped_ids():
    x, w13, w2, w, ids, _, _ = layer(T=53, K=2, E=5, D=40, F=24, dtype=torch.float32)
    ids[:, 0] = 3  # every token on expert 3: 53 rows, nine tiles of 5-6
    ids[:, 1] = torch.where(torch.arange(53) % 2 == 0, 1, -1)  # experts 0, 2, 4 empty; half the slots skipped
    ids[7, 1] = 5  # out of range: skipped too (expert parallelism hands over local ids only)
    y = cpu_moe.fused_moe_cpu(x, w13, w2, w, ids)
    torch.testing.assert_close(y, oracle(x, w13, w2, w, ids), atol=2e-5, rtol=2e-5)
    ids[5] = -1  # a token whose every slot is skipped gets exactly zero
    assert torch.count_nonzero(cpu_moe.fused_moe_cpu(x, w13, w2, w, ids)[5]) == 0
    ids[:] = -1  # no live row at all
    assert torch.count_nonzero(cpu_moe.fused_moe_cpu(x, w13, w2, w, ids)) == 0


@needs_kernel
def test_fused_moe_ref_takes_it_in_fp32_only():
    x, w13, w2, w, ids, _, _ = layer(T=9, K=2, E=4, D=24, F=16, dtype=torch.float32)
    assert torch.equal(fused_moe_ref(x, w13, w2, w, ids), cpu_moe.fused_moe_cpu(x, w13, w2, w, ids))
    assert cpu_moe.supports(x, w13, w2, w, "silu")
    assert not cpu_moe.supports(x.double(), w13.double(), w2.double(), w.double(), "silu")
    assert not cpu_moe.supports(x, w13.transpose(1, 2), w2, w, "silu")  # never copies a layer's weights
    assert not cpu_moe.supports(x, w13, w2, w, "gelu")


def test_falls_back_to_torch_without_the_kernel(monkeypatch):
    x, w13, w2, w, ids, b13, b2 = layer(T=9, K=2, E=4, D=24, F=16, dtype=torch.float32, bias=True)
    monkeypatch.setattr(cpu_moe, "_library", lambda: None)
    assert not cpu_moe.available()
    torch.testing.assert_close(fused_moe_ref(x, w13, w2, w, ids, "silu", b13, b2),
                               oracle(x, w13, w2, w, ids, "silu", b13, b2), atol=2e-5, rtol=2e-5)


def test_no_library_when_switched_off_without_avx2_or_without_compiler(monkeypatch, tmp_path):
    src = "int moebench_probe(void) { return 7; }\n"
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("MOEBENCH_CPU_GEMM", "0")
    assert _cbuild.load("probe", src, {"moebench_probe": []}) is None
    monkeypatch.delenv("MOEBENCH_CPU_GEMM")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert _cbuild.load("probe", src, {"moebench_probe": []}) is None
    monkeypatch.setattr(_cbuild, "cpu_has_avx2_fma", lambda: False)
    monkeypatch.delenv("CC")
    assert _cbuild.load("probe", src, {"moebench_probe": []}) is None


@needs_kernel
def test_prepacked_copy_follows_in_place_updates_and_packing_per_call_matches(monkeypatch):
    x, w13, w2, w, ids, _, _ = layer(T=12, K=2, E=4, D=40, F=24, dtype=torch.float32)
    cpu_moe.fused_moe_cpu(x, w13, w2, w, ids)
    assert cpu_moe.packed_weights(w13, 2) is not None
    w13.mul_(-0.5)  # an in-place update: the packed copy must not go stale
    torch.testing.assert_close(cpu_moe.fused_moe_cpu(x, w13, w2, w, ids), oracle(x, w13, w2, w, ids),
                               atol=2e-5, rtol=2e-5)
    monkeypatch.setenv("MOEBENCH_CPU_PREPACK", "0")
    w2b = w2.clone()  # not packed yet: with prepacking off the kernel packs per call
    assert cpu_moe.packed_weights(w2b, 1) is None
    torch.testing.assert_close(cpu_moe.fused_moe_cpu(x, w13, w2b, w, ids), oracle(x, w13, w2, w, ids),
                               atol=2e-5, rtol=2e-5)
