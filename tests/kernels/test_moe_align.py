import pytest
import torch

import moebench_kernels.moe_align as ma
from tests.kernels.helpers import routing

pytestmark = pytest.mark.usefixtures("interpreter")


def check(ids: torch.Tensor, E: int) -> None:
    got, ref = ma.moe_align(ids, E), ma.moe_align_ref(ids, E)
    n = int(ref.counts_E.sum())
    assert torch.equal(got.counts_E, ref.counts_E)
    assert torch.equal(got.row_start_E, ref.row_start_E)
    assert torch.equal(got.sorted_ids_R[:n], ref.sorted_ids_R[:n])


@pytest.mark.parametrize("T,K,E", [(1, 1, 1), (1, 8, 384), (7, 2, 8), (13, 3, 5)])
def test_single_program_path_matches_ref(T, K, E):
    check(routing(T, K, E)[1], E)


def test_chunked_path_matches_ref(monkeypatch):
    # shrink the chunk so the multi-program path runs on a tiny input (the interpreter sorts slowly)
    monkeypatch.setattr(ma, "SMALL_R", 8)
    monkeypatch.setattr(ma, "CHUNK", 16)
    ids = routing(19, 3, 6, seed=1)[1]  # 57 rows -> 4 chunks, the last partial
    ids[4, 1] = -1
    ids[11:, 0] = 2  # a hot expert spanning chunks
    check(ids, 6)


def test_skipped_ids_empty_experts_and_one_hot_expert():
    ids = torch.full((9, 2), 3)
    ids[:, 1] = -1
    ids[0, 1] = 4
    got = ma.moe_align(ids, 6)
    assert got.counts_E.tolist() == [0, 0, 0, 9, 1, 0]
    assert got.row_start_E.tolist() == [0, 0, 0, 0, 9, 10]
    assert got.sorted_ids_R[:10].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 1]


def test_all_rows_skipped():
    got = ma.moe_align(torch.full((3, 2), -1), 4)
    assert got.counts_E.tolist() == [0, 0, 0, 0]
