"""Static-shape decode (a device-tensor `start`, what CUDA-graph replay needs) computes what the int path does."""

import pytest
import torch

import moebench.models as M


@pytest.mark.parametrize("name", ["llama3:debug", "mixtral:debug", "qwen3-moe:debug", "deepseek-v3:debug", "gpt-oss:debug"])
def test_tensor_start_matches_int_start(name):
    m = M.load(name, seed=3)
    b, p, o = 2, 140, 5  # past gpt-oss's debug sliding window, so the window mask is exercised too
    ids = torch.randint(0, m.cfg.vocab_size, (b, p), generator=torch.Generator().manual_seed(0))
    c_int, c_tensor = m.new_cache(b, p + o), m.new_cache(b, p + o)
    with torch.no_grad():
        first = m(ids, cache=c_int, start=0, last_only=True)
        m(ids, cache=c_tensor, start=0, last_only=True)
        nxt = first[:, -1].argmax(-1, keepdim=True)
        for i in range(o - 1):
            want = m(nxt, cache=c_int, start=p + i, last_only=True)
            got = m(nxt, cache=c_tensor, start=torch.tensor(p + i), last_only=True)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
            nxt = want[:, -1].argmax(-1, keepdim=True)
