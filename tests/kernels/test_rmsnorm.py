import pytest
import torch

from moebench_kernels.rmsnorm import fused_add_rmsnorm, fused_add_rmsnorm_ref, rmsnorm, rmsnorm_ref
from tests.kernels.helpers import DTYPES, TOL

pytestmark = pytest.mark.usefixtures("interpreter")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 8), (3, 5, 100), (2, 7168)])
@pytest.mark.parametrize("scale_fp32", [False, True])
def test_rmsnorm_matches_ref(dtype, shape, scale_fp32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype)
    r = torch.randn(shape, generator=g).to(dtype)
    w = torch.randn(shape[-1], generator=g).to(dtype)
    y = rmsnorm(x, w, 1e-6, scale_fp32=scale_fp32)
    y_ref = rmsnorm_ref(x, w, 1e-6, scale_fp32=scale_fp32)
    assert y.dtype == y_ref.dtype and y.shape == x.shape
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    n, new_r = fused_add_rmsnorm(x, r, w, 1e-5, scale_fp32=scale_fp32)
    n_ref, new_r_ref = fused_add_rmsnorm_ref(x, r, w, 1e-5, scale_fp32=scale_fp32)
    torch.testing.assert_close(new_r, new_r_ref, atol=0, rtol=0)
    torch.testing.assert_close(n, n_ref, **TOL[dtype])


def test_fp32_weight_on_half_input_promotes_like_torch():
    x = torch.randn(2, 16).half()
    w = torch.rand(16)
    assert rmsnorm(x, w, 1e-6).dtype == rmsnorm_ref(x, w, 1e-6).dtype == torch.float32
    assert rmsnorm(x, w, 1e-6, scale_fp32=True).dtype == torch.float16


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="weight must be"):
        rmsnorm(torch.randn(2, 8), torch.ones(4), 1e-6)
