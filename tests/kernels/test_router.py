import pytest
import torch

from moebench_kernels.router import (
    grouped_topk_sigmoid,
    grouped_topk_sigmoid_ref,
    topk_softmax,
    topk_softmax_ref,
    topk_then_softmax,
    topk_then_softmax_ref,
)
from tests.kernels.helpers import DTYPES

pytestmark = pytest.mark.usefixtures("interpreter")


def assert_same_selection(got, ref, atol=1e-6):
    """Compare as sets per token: the order of the k columns carries no meaning."""
    (w, ids), (w_ref, ids_ref) = got, ref
    assert ids.dtype == ids_ref.dtype == torch.int64 and w.dtype == w_ref.dtype == torch.float32
    s, p = ids.sort(1)
    s_ref, p_ref = ids_ref.sort(1)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(w.gather(1, p), w_ref.gather(1, p_ref), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,E,k", [(1, 8, 2), (19, 128, 8), (3, 384, 8), (5, 7, 3)])
@pytest.mark.parametrize("renormalize", [True, False])
def test_topk_softmax(T, E, k, dtype, renormalize):
    logits = torch.randn(T, E, generator=torch.Generator().manual_seed(T + E)).to(dtype)
    assert_same_selection(topk_softmax(logits, k, renormalize), topk_softmax_ref(logits, k, renormalize))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,E,k", [(1, 32, 4), (17, 128, 4)])
def test_topk_then_softmax(T, E, k, dtype):
    logits = torch.randn(T, E, generator=torch.Generator().manual_seed(E)).to(dtype)
    assert_same_selection(topk_then_softmax(logits, k), topk_then_softmax_ref(logits, k))


def test_ties_inside_the_selection_are_compared_as_sets():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, -1.0]])  # three-way tie inside the top 3
    assert_same_selection(topk_softmax(logits, 3), topk_softmax_ref(logits, 3))
    assert_same_selection(topk_then_softmax(logits, 3), topk_then_softmax_ref(logits, 3))


@pytest.mark.parametrize("T,E,k,n_group,topk_group", [
    (1, 256, 8, 8, 4),   # DeepSeek-V3
    (3, 384, 8, 1, 1),   # Kimi-K2
    (9, 16, 4, 4, 2),
    (2, 12, 3, 3, 2),    # group size not a power of two
])
@pytest.mark.parametrize("renormalize", [True, False])
def test_grouped_topk_sigmoid(T, E, k, n_group, topk_group, renormalize):
    g = torch.Generator().manual_seed(E)
    logits = torch.randn(T, E, generator=g)
    bias = 0.1 * torch.randn(E, generator=g)
    kw = dict(n_group=n_group, topk_group=topk_group, renormalize=renormalize, routed_scaling_factor=2.5)
    assert_same_selection(grouped_topk_sigmoid(logits, bias, k, **kw), grouped_topk_sigmoid_ref(logits, bias, k, **kw))


def test_grouped_selection_uses_biased_scores_but_unbiased_weights():
    logits = torch.zeros(1, 8)
    bias = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 4.0])
    w, ids = grouped_topk_sigmoid(logits, bias, 2, n_group=2, topk_group=1, routed_scaling_factor=1.0)
    assert sorted(ids[0].tolist()) == [6, 7]
    torch.testing.assert_close(w, torch.full((1, 2), 0.5))  # sigmoid(0) renormalised, no bias in the weights


def test_invalid_group_configuration_is_rejected():
    with pytest.raises(ValueError, match="n_group"):
        grouped_topk_sigmoid_ref(torch.randn(2, 10), torch.zeros(10), 2, n_group=3, topk_group=1)
