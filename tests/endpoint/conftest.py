import asyncio
from pathlib import Path

import pytest

from moebench.endpoint.stub import Faults, serve_in_thread


@pytest.fixture
def stub():
    """stub(**faults) -> a running fault-injecting server (stopped at the end of the test)."""
    servers = []

    def start(**faults):
        cm = serve_in_thread(Faults(**faults))
        servers.append(cm)
        return cm.__enter__()

    yield start
    for cm in servers:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory) -> Path:
    """A word-level tokenizer.json knowing "tok" and a few words: one token per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["tok tok hello world", "count from one to ten"],
                            trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>"]))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def run(coro):
    return asyncio.run(coro)
