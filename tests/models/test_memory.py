"""The memory check refuses a run that cannot fit, before allocating, in one line with the bytes and the
largest `layers:` that would fit."""

from __future__ import annotations

import re

import pytest

from moebench.errors import BadInput, ExitCode
from moebench.models import memory, resolve_name
from moebench.models.memory import check_fits, largest_layers_that_fit, required_bytes

GB = 1e9


def _cfg(name, layers=None):
    return resolve_name(name)[1].with_layers(layers)


def test_deepseek_671b_with_4_layers_does_not_fit_a_24gb_cpu(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 24 * GB)
    cfg = _cfg("deepseek-v3:671b", 4)
    need = required_bytes(cfg, batch=1, max_seq=64, dtype_bytes=4)
    # 4 layers = 3 dense + 1 MoE layer of 256 experts: ≈ 15.1 B parameters, ≈ 60 GB in fp32
    assert 55 * GB < need < 70 * GB
    with pytest.raises(BadInput) as exc:
        check_fits("deepseek-v3:671b", cfg, batch=1, max_seq=64, dtype_bytes=4, device="cpu")
    msg = str(exc.value)
    assert exc.value.code == ExitCode.BAD_INPUT and "\n" not in msg
    assert re.fullmatch(
        r"deepseek-v3:671b with layers: 4 needs (\d+\.\d) GB but cpu has 24\.0 GB available; "
        r"the largest layers: that fits is 3", msg
    ), msg
    assert float(re.search(r"needs (\S+) GB", msg).group(1)) == round(need / GB, 1)


def test_the_ranks_of_one_cpu_host_share_its_memory(monkeypatch):
    """Each local rank builds the whole model: four of them need four times one's memory on a CPU host (each GPU
    rank has its own device). validate and run said ok, and the ranks would be OOM-killed mid-build."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: 24 * GB)
    cfg = _cfg("mixtral:8x7b", 2)
    assert 6 * GB < required_bytes(cfg, batch=4, max_seq=20, dtype_bytes=4) < 24 * GB
    check_fits("mixtral:8x7b", cfg, batch=4, max_seq=20, dtype_bytes=4, device="cpu")
    with pytest.raises(BadInput, match=r"but cpu has 24\.0 GB available for its 4 ranks, 6\.0 GB each"):
        check_fits("mixtral:8x7b", cfg, batch=4, max_seq=20, dtype_bytes=4, device="cpu", ranks_here=4)


def test_tests_set_the_available_memory_through_the_environment(monkeypatch):
    """A subprocess test cannot monkeypatch: it sets the free memory it asserts against, so that the answer does
    not depend on what else the machine runs (13 GB in use elsewhere once changed "3 layers fit" into "none")."""
    monkeypatch.setenv(memory.AVAILABLE_ENV, str(int(24 * GB)))
    assert memory.available_bytes("cpu") == 24 * GB
    with pytest.raises(BadInput, match=r"needs \d+\.\d GB but cpu has 24\.0 GB available; the largest layers: that fits is 3"):
        check_fits("deepseek-v3:671b", _cfg("deepseek-v3:671b", 4), batch=1, max_seq=64, dtype_bytes=4, device="cpu")


@pytest.mark.parametrize("batch, max_seq, hint", [
    # not the layers' fault: the batch, else the sequence length, is named with what would fit
    (10**9, 10, r"batch size 1000000000 does not fit: the largest that fits is (\d+)$"),
    (1, 10**12, r"1000000000000 tokens per sequence \(prompt \+ output\) do not fit: at batch size 1 at most (\d+) do$"),
])
def test_an_absurd_batch_or_prompt_is_named_with_what_fits(monkeypatch, batch, max_seq, hint):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 8 * GB)
    cfg = _cfg("llama3:debug")
    with pytest.raises(BadInput) as exc:
        check_fits("llama3:debug", cfg, batch=batch, max_seq=max_seq, dtype_bytes=4, device="cpu")
    n = int(re.search(hint, str(exc.value)).group(1))
    b, s = (n, max_seq) if batch > 1 else (1, n)
    assert required_bytes(cfg, batch=b, max_seq=s, dtype_bytes=4) <= 8 * GB  # the number given fits ...
    b, s = (n + 1, max_seq) if batch > 1 else (1, n + 1)
    assert required_bytes(cfg, batch=b, max_seq=s, dtype_bytes=4) > 8 * GB  # ... and is the largest that does


def test_largest_layers_that_fit_is_the_boundary():
    cfg = _cfg("gpt-oss:120b", 2)
    have = required_bytes(_cfg("gpt-oss:120b", 5), batch=1, max_seq=64, dtype_bytes=2)
    assert largest_layers_that_fit(cfg, batch=1, max_seq=64, dtype_bytes=2, available=have) == 5
    assert largest_layers_that_fit(cfg, batch=1, max_seq=64, dtype_bytes=2, available=have - 1) == 4
    assert largest_layers_that_fit(cfg, batch=1, max_seq=64, dtype_bytes=2, available=10**6) == 0


def test_nothing_fits_says_so(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * GB)
    with pytest.raises(BadInput, match="not even layers: 1 fits"):
        check_fits("llama3:405b", _cfg("llama3:405b"), batch=1, max_seq=36, dtype_bytes=2, device="cpu")


def test_required_bytes_adds_weights_kv_and_working_set():
    cfg = _cfg("llama3:8b", 2)
    small = required_bytes(cfg, batch=1, max_seq=128, dtype_bytes=2)
    assert small > cfg.weight_bytes(2) + cfg.kv_bytes(1, 128, 2)
    # a bigger batch and context grow the KV cache and the working set, not the weights
    big = required_bytes(cfg, batch=8, max_seq=1024, dtype_bytes=2)
    assert big - small > cfg.kv_bytes(8, 1024, 2) - cfg.kv_bytes(1, 128, 2)


def test_available_bytes_reads_the_machine():
    assert memory.available_bytes("cpu") > 0
