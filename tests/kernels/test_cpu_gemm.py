import pytest
import torch

from moebench_kernels import cpu_gemm

pytestmark = pytest.mark.skipif(not cpu_gemm.available(), reason="needs x86-64 AVX2+FMA and a C compiler")


@pytest.mark.parametrize("M", [1, 2, 3, 5, 16, 17, 64])
@pytest.mark.parametrize("N,K", [(8, 16), (13, 520), (130, 1032)])  # N % 4 != 0; K past one 512-wide chunk
def test_small_m_gemm_matches_ref(M, N, K):
    g = torch.Generator().manual_seed(M * N)
    a, w = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g)
    torch.testing.assert_close(cpu_gemm.linear_small_m(a, w), cpu_gemm.linear_small_m_ref(a, w),
                               atol=1e-4, rtol=1e-4)


def test_strided_rows_and_out_buffer():
    big = torch.randn(6, 64)
    a = big[:, :32]  # row stride 64, as the gate half of a [rows, 2F] activation is
    w = torch.randn(9, 32)
    out = torch.full((6, 9), float("nan"))
    cpu_gemm.linear_small_m(a, w, out)
    torch.testing.assert_close(out, a @ w.t(), atol=1e-5, rtol=1e-5)


def test_unsupported_layouts_are_reported():
    assert not cpu_gemm.supports(torch.randn(2, 12), torch.randn(3, 12))  # K % 8
    assert not cpu_gemm.supports(torch.randn(2, 16).double(), torch.randn(3, 16).double())
    assert not cpu_gemm.supports(torch.randn(65, 16), torch.randn(3, 16))  # M past the kernel's limit
