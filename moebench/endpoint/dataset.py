"""The prompts a level sends: random words of a sampled length, a local JSONL/ShareGPT file, or shared prefixes.

Without a tokenizer a random prompt is n common English words, each one token in the BPE vocabularies of current
models (the server's usage then says what it counted); with one, n token ids are drawn and decoded, vLLM-style.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from moebench.endpoint.tokens import Tokenizer
from moebench.endpoint.workload import Dataset, JsonlDataset, RandomDataset, SharedPrefixDataset
from moebench.errors import BadInput

# Single-token words (a leading space included) in the Llama 3, Qwen, GPT-4o and Mistral vocabularies.
WORDS = (
    "time year people way day man thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number night point home water room "
    "mother area money story fact month lot right study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war history party result "
    "change morning reason research girl guy moment air teacher force education"
).split()


@dataclass(frozen=True)
class Prompt:
    text: str
    max_tokens: int
    prompt_tokens: Optional[int]  # as the dataset sized it; the server's usage is what gets counted


class PromptSource:
    """The prompts of one run, drawn in order: every request of every level, repeat and warm-up gets its own, so
    that a server's prefix cache (vLLM's prefix caching, SGLang's radix cache) never answers a prompt it has seen
    and repeats stay independent samples. Random prompts continue one seeded stream; shared-prefix prompts keep
    their group's prefix (the point of that dataset) and draw a fresh question; a file's entries are sent in order
    and, once all were sent, again with a distinct `[request N] ` prefix (N counts from 1 over the run)."""

    def __init__(self, ds: Dataset, tokenizer: Optional[Tokenizer], source: str = "dataset"):
        self.ds, self.tokenizer, self.sent = ds, tokenizer, 0
        self.rng = random.Random(ds.seed)
        self.entries: list[Prompt] = []
        self.prefixes: list[str] = []
        if isinstance(ds, JsonlDataset):
            self.entries = read_file_entries(ds, tokenizer, source)
            if ds.shuffle:
                self.rng.shuffle(self.entries)
        elif isinstance(ds, SharedPrefixDataset):
            self.prefixes = [_random_text(self.rng, ds.prefix_tokens, tokenizer) for _ in range(ds.groups)]

    def take(self, n: int) -> list[Prompt]:
        """The next `n` prompts."""
        out = [self._one(self.sent + i) for i in range(n)]
        self.sent += n
        return out

    def _one(self, i: int) -> Prompt:
        ds, rng, tokenizer = self.ds, self.rng, self.tokenizer
        if isinstance(ds, RandomDataset):
            return Prompt(_random_text(rng, _length(rng, ds.prompt_tokens, ds.range_ratio), tokenizer),
                          _length(rng, ds.output_tokens, ds.range_ratio, floor=2), None)
        if isinstance(ds, SharedPrefixDataset):
            return Prompt(self.prefixes[i % ds.groups] + " " + _random_text(rng, ds.prompt_tokens, tokenizer),
                          ds.output_tokens, ds.prefix_tokens + ds.prompt_tokens)
        entry = self.entries[i % len(self.entries)]
        if i < len(self.entries):
            return entry
        text = f"[request {i + 1}] {entry.text}"
        return Prompt(text, entry.max_tokens, tokenizer.count(text) if tokenizer else None)


def build_prompts(ds: Dataset, n: int, tokenizer: Optional[Tokenizer], source: str = "dataset") -> list[Prompt]:
    """The first `n` prompts of a PromptSource."""
    return PromptSource(ds, tokenizer, source).take(n)


def _length(rng: random.Random, n: int, range_ratio: float, floor: int = 1) -> int:
    return max(floor, rng.randint(max(1, int(n * range_ratio)), n))


def _random_text(rng: random.Random, n: int, tokenizer: Optional[Tokenizer]) -> str:
    if tokenizer is None:
        return " ".join(rng.choice(WORDS) for _ in range(n))
    return tokenizer.random_text(rng, n)


def read_file_entries(ds: JsonlDataset, tokenizer: Optional[Tokenizer], source: str) -> list[Prompt]:
    p = Path(ds.path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{source}: dataset.path {p}: cannot read ({exc.__class__.__name__}: {exc})") from None
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise BadInput(f"{source}: dataset.path {p}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    out = [e for e in (_entry(r, ds, tokenizer, p, i) for i, r in enumerate(rows)) if e is not None]
    if not out:
        raise BadInput(f"{source}: dataset.path {p}: no usable entries (a prompt, or a ShareGPT human turn)")
    return out


def _entry(row: object, ds: JsonlDataset, tokenizer: Optional[Tokenizer], p: Path, i: int) -> Optional[Prompt]:
    if not isinstance(row, dict):
        raise BadInput(f"dataset.path {p}: entry {i + 1} is not an object")
    if "prompt" in row:
        out = row.get("output_tokens", ds.output_tokens)
        if not isinstance(row["prompt"], str) or not isinstance(out, int) or isinstance(out, bool) or out < 1:
            raise BadInput(f"dataset.path {p}: entry {i + 1}: prompt must be text and output_tokens a whole number ≥ 1")
        return Prompt(row["prompt"], out, tokenizer.count(row["prompt"]) if tokenizer else None)
    turns = row.get("conversations")
    if not isinstance(turns, Sequence) or len(turns) < 2:
        return None  # ShareGPT files hold one-turn and empty conversations: skipped, as every tool does
    first, second = turns[0], turns[1]
    if not (isinstance(first, dict) and isinstance(second, dict)) or not isinstance(first.get("value"), str):
        return None
    answer = second.get("value") if isinstance(second.get("value"), str) else ""
    out = max(2, tokenizer.count(answer)) if tokenizer and answer else ds.output_tokens
    return Prompt(first["value"], out, tokenizer.count(first["value"]) if tokenizer else None)
