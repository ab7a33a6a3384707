import json

import pytest

from moebench.endpoint.dataset import PromptSource, build_prompts
from moebench.endpoint.tokens import Tokenizer
from moebench.endpoint.workload import JsonlDataset, RandomDataset, SharedPrefixDataset
from moebench.errors import BadInput


def test_random_lengths_in_range_and_reproducible():
    ds = RandomDataset(kind="random", prompt_tokens=100, output_tokens=50, range_ratio=0.5, seed=3)
    a, b = build_prompts(ds, 50, None), build_prompts(ds, 50, None)
    assert a == b
    assert all(50 <= len(p.text.split()) <= 100 and 25 <= p.max_tokens <= 50 for p in a)
    assert len({p.max_tokens for p in a}) > 5 and len({p.text for p in a}) == 50


def test_random_with_a_tokenizer_sizes_prompts_in_its_tokens(word_tokenizer):
    tok = Tokenizer(word_tokenizer)
    ps = build_prompts(RandomDataset(kind="random", prompt_tokens=30, output_tokens=8), 5, tok)
    assert all(tok.count(p.text) == 30 for p in ps)


def test_shared_prefix_groups():
    ps = build_prompts(SharedPrefixDataset(kind="shared_prefix", groups=2, prefix_tokens=20, prompt_tokens=5,
                                           output_tokens=4), 6, None)
    heads = [" ".join(p.text.split()[:20]) for p in ps]
    assert len(set(heads)) == 2 and heads[0] == heads[2] == heads[4]
    assert all(p.prompt_tokens == 25 for p in ps)


def test_jsonl_and_sharegpt(tmp_path, word_tokenizer):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "hello", "output_tokens": 7}) + "\n" + json.dumps({"prompt": "world"}) + "\n")
    ps = build_prompts(JsonlDataset(kind="jsonl", path=str(f), shuffle=False, output_tokens=9), 3, None)
    # once every entry was sent, an entry goes again under a distinct prefix: no prompt is sent twice
    assert [(p.text, p.max_tokens) for p in ps] == [("hello", 7), ("world", 9), ("[request 3] hello", 7)]
    g = tmp_path / "sharegpt.json"
    g.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "hello world"}, {"from": "gpt", "value": "tok tok tok"}]},
        {"conversations": [{"from": "human", "value": "alone"}]},
    ]))
    [p] = build_prompts(JsonlDataset(kind="jsonl", path=str(g)), 1, Tokenizer(word_tokenizer))
    assert (p.text, p.max_tokens, p.prompt_tokens) == ("hello world", 3, 2)


def test_prompts_drawn_in_parts_never_repeat():
    src = PromptSource(RandomDataset(kind="random", prompt_tokens=4, output_tokens=4, seed=1), None)
    parts = [src.take(20) for _ in range(5)]
    texts = [p.text for part in parts for p in part]
    assert len(set(texts)) == len(texts) == 100
    assert [p.text for p in build_prompts(src.ds, 40, None)] == texts[:40]  # the same seeded stream


def test_unreadable_dataset_is_one_bad_input_line(tmp_path):
    with pytest.raises(BadInput, match="no usable entries"):
        (tmp_path / "e.jsonl").write_text('{"other": 1}\n')
        build_prompts(JsonlDataset(kind="jsonl", path=str(tmp_path / "e.jsonl")), 1, None)
    with pytest.raises(BadInput, match="cannot read"):
        build_prompts(JsonlDataset(kind="jsonl", path=str(tmp_path / "missing.jsonl")), 1, None)
