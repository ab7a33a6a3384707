"""A local tokenizer (a Hugging Face `tokenizer.json`, read with the `tokenizers` library): counts tokens when the
server reports no usage, and sizes random prompts exactly."""

from __future__ import annotations

import random
from pathlib import Path

from moebench.errors import BadInput, EnvironmentProblem


class Tokenizer:
    def __init__(self, path: str | Path):
        try:
            from tokenizers import Tokenizer as _Tok
        except ImportError:
            raise EnvironmentProblem("tokenizer: needs the `tokenizers` package (pip install tokenizers)") from None
        p = Path(path).expanduser()
        f = p / "tokenizer.json" if p.is_dir() else p
        try:
            self._tok = _Tok.from_file(str(f))
        except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception for a missing/broken file
            raise BadInput(f"tokenizer {path}: cannot load {f} ({exc})") from None
        self.path = str(p)
        special = set(self._tok.get_added_tokens_decoder())
        self._ids = [i for i in range(self._tok.get_vocab_size()) if i not in special]

    def count(self, text: str) -> int:
        """Tokens in `text`, without the special tokens a chat template or BOS would add (MEASURE.md)."""
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def random_text(self, rng: random.Random, n: int) -> str:
        """Text that re-encodes to about n tokens: n random ids decoded, re-encoded and cut to n."""
        ids = [rng.choice(self._ids) for _ in range(n)]
        ids = self._tok.encode(self._tok.decode(ids), add_special_tokens=False).ids[:n]
        return self._tok.decode(ids)
