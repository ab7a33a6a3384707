import pytest
import torch

from moebench_kernels.fused_moe import fused_moe, fused_moe_grouped_mm, fused_moe_naive_ref, fused_moe_ref
from tests.kernels.helpers import DTYPES, TOL, routing


def layer(T, K, E, D, F, dtype, bias=False, seed=0):
    """Weights scaled so every intermediate stays O(1) (fp16 tolerances assume it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=g).to(dtype)
    w13 = (torch.randn(E, 2 * F, D, generator=g) / D**0.5).to(dtype)
    w2 = (torch.randn(E, D, F, generator=g) / F**0.5).to(dtype)
    b13 = (0.5 * torch.randn(E, 2 * F, generator=g)).to(dtype) if bias else None
    b2 = (0.5 * torch.randn(E, D, generator=g)).to(dtype) if bias else None
    w, ids = routing(T, K, E, seed)
    return x, w13, w2, w, ids, b13, b2


CASES = {
    "T=1": dict(T=1, K=2, E=8, D=32, F=16),
    "T not a multiple of the block": dict(T=37, K=2, E=8, D=64, F=48),  # 74 rows, BLOCK_M 16; D, F odd tiles
    "E=384 K=8": dict(T=3, K=8, E=384, D=32, F=16),
    "E not a power of two": dict(T=20, K=3, E=6, D=40, F=24),
}


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_triton_matches_ref(case, dtype):
    x, w13, w2, w, ids, _, _ = layer(**CASES[case], dtype=dtype)
    torch.testing.assert_close(fused_moe(x, w13, w2, w, ids), fused_moe_ref(x, w13, w2, w, ids), **TOL[dtype])


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_swiglu_oai_with_biases(dtype):
    x, w13, w2, w, ids, b13, b2 = layer(T=9, K=4, E=8, D=32, F=32, dtype=dtype, bias=True)
    x = 4 * x  # push gate and up past the ±7 clamp for some entries
    y = fused_moe(x, w13, w2, w, ids, "swiglu_oai", b13, b2)
    torch.testing.assert_close(y, fused_moe_ref(x, w13, w2, w, ids, "swiglu_oai", b13, b2), **TOL[dtype])


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_empty_expert_hot_expert_and_skipped_ids(dtype):
    x, w13, w2, w, ids, _, _ = layer(T=21, K=2, E=5, D=32, F=16, dtype=dtype)
    ids[:, 0] = 3  # every token on expert 3 (more rows than one block)
    ids[:, 1] = torch.where(torch.arange(21) % 2 == 0, 1, -1)  # experts 0, 2, 4 empty; half the slots skipped
    y = fused_moe(x, w13, w2, w, ids)
    torch.testing.assert_close(y, fused_moe_ref(x, w13, w2, w, ids), **TOL[dtype])
    # a token whose every slot is -1 gets exactly zero
    ids[5] = -1
    assert torch.count_nonzero(fused_moe(x, w13, w2, w, ids)[5]) == 0


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype", DTYPES)
def test_ids_outside_the_experts_are_skipped_even_over_garbage_scratch(dtype, monkeypatch):
    """moe_align drops ids < 0 and ids >= E, so the down GEMM never writes their rows; the combine must not read
    them. Fresh CPU memory is mostly zero, which would hide such a read: the scratch here starts as NaN, as a
    reused CUDA block may."""
    x, w13, w2, w, ids, _, _ = layer(T=9, K=2, E=4, D=32, F=16, dtype=dtype)
    ids[::2, 1] = 4  # == E
    ids[1, 0] = -1
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan"))
                        if (k.get("dtype") or torch.get_default_dtype()).is_floating_point else empty(*a, **k))
    y = fused_moe(x, w13, w2, w, ids)
    monkeypatch.undo()
    assert not torch.isnan(y).any()
    torch.testing.assert_close(y, fused_moe_ref(x, w13, w2, w, ids), **TOL[dtype])


@pytest.mark.parametrize("activation", ["silu", "swiglu_oai"])
def test_ref_equals_per_token_formula_fp64(activation):
    x, w13, w2, w, ids, b13, b2 = layer(T=11, K=3, E=7, D=24, F=10, dtype=torch.float64, bias=True, seed=3)
    ids[2, 1] = -1
    y = fused_moe_ref(x, w13, w2, w, ids, activation, b13, b2)
    torch.testing.assert_close(y, fused_moe_naive_ref(x, w13, w2, w, ids, activation, b13, b2), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_mm_path_matches_ref(dtype):
    x, w13, w2, w, ids, b13, b2 = layer(T=13, K=2, E=6, D=32, F=16, dtype=dtype, bias=True)
    ids[0, 0] = -1
    tol = {"atol": 2e-5, "rtol": 2e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(fused_moe_grouped_mm(x, w13, w2, w, ids, "silu", b13, b2),
                               fused_moe_ref(x, w13, w2, w, ids, "silu", b13, b2), **tol)


def test_bad_shapes_and_activation_are_rejected():
    x, w13, w2, w, ids, _, _ = layer(T=2, K=2, E=4, D=16, F=8, dtype=torch.float32)
    with pytest.raises(ValueError, match="activation"):
        fused_moe_ref(x, w13, w2, w, ids, activation="gelu")
    with pytest.raises(ValueError, match="shape mismatch"):
        fused_moe_ref(x, w13, w2[:, :, :4], w, ids)


@pytest.mark.usefixtures("interpreter")
def test_triton_small_tiles_cover_k_loop_tails_and_n_wrap():
    # 16-wide tiles on D=40, F=24: three K steps with a masked tail, two N blocks with wrapped columns
    cfg = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 16, "BLOCK_SIZE_K": 16, "GROUP_SIZE_M": 2, "num_warps": 4,
           "num_stages": 1}
    x, w13, w2, w, ids, b13, b2 = layer(T=19, K=2, E=3, D=40, F=24, dtype=torch.float32, bias=True)
    y = fused_moe(x, w13, w2, w, ids, "silu", b13, b2, configs={"gate_up": cfg, "down": cfg})
    torch.testing.assert_close(y, fused_moe_ref(x, w13, w2, w, ids, "silu", b13, b2), **TOL[torch.float32])


def _tma_configs(bm=16, bn=16, bk=16):
    c = {"BLOCK_SIZE_M": bm, "BLOCK_SIZE_N": bn, "BLOCK_SIZE_K": bk, "GROUP_SIZE_M": 2, "num_warps": 4,
         "num_stages": 1, "USE_TMA": 1}
    return {"gate_up": c, "down": dict(c)}


@pytest.fixture
def tma_taken(monkeypatch):
    """What `_tma_ok` decided for each GEMM of the calls in the test."""
    import moebench_kernels.fused_moe as fm

    seen, real = [], fm._tma_ok
    monkeypatch.setattr(fm, "_tma_ok", lambda *a: seen.append(real(*a)) or seen[-1])
    return seen


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_tma_path_matches_ref(case, dtype, tma_taken):
    # Tensor descriptors: x gathered into sorted order, boxes past the K tail / past R zero-filled, boxes past
    # an expert's rows or past F / D reading the neighbour's rows (never stored).
    x, w13, w2, w, ids, _, _ = layer(**CASES[case], dtype=dtype)
    y = fused_moe(x, w13, w2, w, ids, configs=_tma_configs())
    torch.testing.assert_close(y, fused_moe_ref(x, w13, w2, w, ids), **TOL[dtype])
    assert tma_taken == [True, True]  # both GEMMs ran the descriptor path, not the pointer fallback


@pytest.mark.usefixtures("interpreter")
def test_tma_path_with_biases_skipped_ids_and_a_hot_expert(tma_taken):
    x, w13, w2, w, ids, b13, b2 = layer(T=21, K=2, E=5, D=40, F=24, dtype=torch.float32, bias=True)
    ids[:, 0] = 4  # the last expert: its gate/up boxes past F run off the end of w13
    ids[:, 1] = torch.where(torch.arange(21) % 3 == 0, 1, -1)  # the skipped rows' sorted_ids are never written
    y = fused_moe(x, w13, w2, w, ids, "swiglu_oai", b13, b2, configs=_tma_configs(bk=32))
    torch.testing.assert_close(y, fused_moe_ref(x, w13, w2, w, ids, "swiglu_oai", b13, b2), **TOL[torch.float32])
    assert tma_taken == [True, True]
    ids[:] = -1
    assert torch.count_nonzero(fused_moe(x, w13, w2, w, ids, configs=_tma_configs())) == 0


def test_tma_is_refused_where_rows_are_not_16_byte_aligned():
    from moebench_kernels.fused_moe import _tma_ok

    cfg = {"USE_TMA": 1}
    w = torch.zeros(2, 8, 16)
    assert _tma_ok(cfg, torch.zeros(3, 16), w)
    assert not _tma_ok(cfg, torch.zeros(3, 18), torch.zeros(2, 8, 18))  # 72-byte rows
    assert not _tma_ok(cfg, torch.zeros(65)[1:].view(4, 16), w)  # 64-byte rows, base 4 bytes past an aligned one
    assert not _tma_ok({"USE_TMA": 0}, torch.zeros(3, 16), w)
