"""The stream accounting against a server that misbehaves the ways real ones do."""

import pytest

from moebench.endpoint.client import RequestOptions, _count_tokens, open_session, send
from moebench.endpoint.dataset import Prompt
from moebench.endpoint.stats import itl_per_token_ms, tpot_ms, ttft_ms
from moebench.endpoint.tokens import Tokenizer

from .conftest import run


def one(server, prompt=Prompt("hello world", 10, None), tokenizer=None, **opts):
    async def go():
        async with open_session(None) as c:
            o = RequestOptions(url=server.base_url + "/chat/completions", model="m", api="chat", **opts)
            return await send(c, o, prompt, tokenizer)

    return run(go())


def test_multi_token_chunks_with_continuous_usage_give_per_token_itl(stub):
    rec = one(stub(tokens_per_chunk=3, usage="continuous"), continuous_usage=True)
    assert rec.ok and rec.output_source == "continuous_usage"
    assert rec.chunk_tokens == [3, 3, 3, 1] and rec.output_tokens == 10
    # the first chunk's tokens have no gap before them: 3 + 3 + 1 tokens get a per-token ITL
    assert len(itl_per_token_ms(rec)) == 7
    assert rec.done_marker and rec.finish_reason == "length"


def test_final_usage_only_counts_tokens_but_no_per_token_itl(stub):
    rec = one(stub(tokens_per_chunk=4, usage="final"), continuous_usage=True)
    assert rec.ok and rec.output_source == "final_usage" and rec.output_tokens == 10
    assert rec.chunk_tokens is None and itl_per_token_ms(rec) == []
    assert len(rec.chunk_times) == 3  # 4 + 4 + 2 tokens
    assert tpot_ms(rec) == pytest.approx((rec.end - rec.first_token) * 1e3 / 9)


def test_no_usage_falls_back_to_the_tokenizer_and_says_so(stub, word_tokenizer):
    server = stub(usage="none", tokens_per_chunk=2)
    rec = one(server, tokenizer=Tokenizer(word_tokenizer))
    assert rec.ok and rec.output_source == "tokenizer" and rec.output_tokens == 10
    assert rec.prompt_source == "tokenizer" and rec.prompt_tokens == 2
    bare = one(server)
    assert bare.ok and bare.output_tokens is None and bare.output_source == "none"
    assert tpot_ms(bare) is None


def test_usage_that_counts_no_tokens_beside_streamed_text_is_not_trusted(stub, word_tokenizer):
    """completion_tokens 0 with content streamed made output tok/s 0.0 and every request good under a TPOT SLO."""
    server = stub(tokens_per_chunk=2)
    assert one(server).output_tokens == 10
    rec = one(server)
    rec.output_tokens, rec.output_source = 0, "final_usage"  # what such a server's final usage says
    _count_tokens(rec, " tok" * 10, Prompt("hello world", 10, None), None)
    assert rec.output_tokens is None and rec.output_source == "none"
    _count_tokens(rec, " tok" * 10, Prompt("hello world", 10, None), Tokenizer(word_tokenizer))
    assert rec.output_tokens == 10 and rec.output_source == "tokenizer"


def test_usage_below_the_chunk_count_is_checked_by_the_tokenizer_where_there_is_one(stub, word_tokenizer):
    """4 tokens over 5 content chunks: impossible from an engine (a token a chunk), honest from a proxy that
    re-chunks the text. The tokenizer decides where there is one; without one the usage stands."""
    rec = one(stub(tokens_per_chunk=2))
    assert len(rec.chunk_times) == 5
    rec.output_tokens, rec.output_source = 4, "final_usage"
    _count_tokens(rec, " tok" * 10, Prompt("hello world", 10, None), Tokenizer(word_tokenizer))
    assert rec.output_tokens == 10 and rec.output_source == "tokenizer"
    rec.output_tokens, rec.output_source = 4, "final_usage"
    _count_tokens(rec, " tok" * 10, Prompt("hello world", 10, None), None)
    assert rec.output_tokens == 4 and rec.output_source == "final_usage"


def test_usage_counting_several_tokens_per_chunk_is_trusted(stub):
    rec = one(stub(tokens_per_chunk=2))
    rec.output_tokens, rec.output_source = 5, "final_usage"  # one token per chunk at the least: possible
    _count_tokens(rec, " tok" * 10, Prompt("hello world", 10, None), None)
    assert rec.output_tokens == 5 and rec.output_source == "final_usage"


def test_an_empty_data_line_is_an_empty_event_not_a_failure(stub):
    rec = one(stub(empty_events=True))
    assert rec.ok and rec.output_tokens == 10 and len(rec.chunk_times) == 10


def test_stream_without_done_marker_is_complete(stub):
    rec = one(stub(done_marker=False))
    assert rec.ok and not rec.done_marker and rec.output_tokens == 10


def test_a_stream_cut_short_of_the_done_marker_the_probe_saw_fails(stub):
    """A server that sends [DONE] (the probe saw it) and then ends one stream without it cut that one short."""
    rec = one(stub(no_done_every=1), expect_done=True)
    assert not rec.ok and "without data: [DONE]" in rec.error
    assert one(stub(), expect_done=True).ok


def test_an_aborted_request_is_a_failure_not_a_short_answer(stub):
    """vLLM and SGLang end a request they give up on with finish_reason "abort", then usage and [DONE]: its three
    tokens are not an answer (counted ok, they shortened TPOT and doubled the request rate)."""
    rec = one(stub(abort_every=1), expect_done=True)
    assert not rec.ok and "finish_reason 'abort'" in rec.error and len(rec.chunk_times) == 3


def test_a_chunk_of_an_unforeseen_shape_fails_the_request_only(stub):
    """`choices: [null]` (or a string delta, content parts) raised out of the parser: the level lost requests and
    the probe ended with an internal error. Now that request fails, with what came."""
    server = stub(odd_chunk_every=2)
    first, second = one(server), one(server)
    assert first.ok and not second.ok and "malformed chunk" in second.error


def test_error_mid_stream_is_a_failure_keeping_what_came(stub):
    rec = one(stub(error_after_chunks=3))
    assert not rec.ok and "error mid-stream: injected error" in rec.error
    assert len(rec.chunk_times) == 3


def test_connection_dropped_mid_stream(stub):
    rec = one(stub(drop_after_chunks=2))
    assert not rec.ok and rec.error.startswith("stream broken")


def test_http_500_is_counted_with_its_body(stub):
    rec = one(stub(http_500_every=1))
    assert not rec.ok and rec.status == 500 and rec.error.startswith("HTTP 500") and "injected failure" in rec.error


def test_slow_first_token_is_ttft(stub):
    rec = one(stub(first_token_delay_s=0.2, token_delay_s=0.0))
    assert rec.ok and ttft_ms(rec) >= 200
    assert (rec.end - rec.first_token) * 1e3 < 200  # the wait is the first token's, not spread over the rest


def test_timeout_is_a_failure_not_a_hang(stub):
    rec = one(stub(first_token_delay_s=5.0), timeout_s=0.3)
    assert not rec.ok and rec.error.startswith("timeout")
    assert rec.end - rec.start < 2


def test_unreachable_is_a_connection_failure():
    async def go():
        async with open_session(None) as c:
            o = RequestOptions(url="http://127.0.0.1:9/v1/chat/completions", model="m", api="chat")
            return await send(c, o, Prompt("x", 4, None))

    rec = run(go())
    assert not rec.ok and rec.error.startswith("connection")


def test_completions_api_reads_text(stub):
    server = stub(tokens_per_chunk=5)

    async def go():
        async with open_session(None) as c:
            o = RequestOptions(url=server.base_url + "/completions", model="m", api="completions")
            return await send(c, o, Prompt("x", 10, None))

    rec = run(go())
    assert rec.ok and rec.output_tokens == 10 and len(rec.chunk_times) == 2
    assert server.log.bodies[-1]["prompt"] == "x" and "messages" not in server.log.bodies[-1]
