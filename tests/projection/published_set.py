"""The validation set of published serving measurements (tests/projection/data/published.yaml): its schema and
loader. Every point names its source and what had to be inferred; `split` is a fixed fit/holdout assignment by
whole source group, and `source_group` lets leave-one-source-out be computed too.

    from tests.projection.published_set import load_published
    ps = load_published()            # PublishedSet: .points, .source_groups
    [p for p in ps.points if p.split == "holdout"]
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from moebench.projection.scenario import LengthMoments

DATA = Path(__file__).parent / "data" / "published.yaml"

Split = Literal["fit", "holdout"]
MetricName = Literal[
    "total_tok_s_per_gpu",  # (input + output) tokens/s per GPU
    "output_tok_s_per_gpu",
    "output_tok_s",  # output tokens/s of everything measured (instances × n_gpus GPUs)
    "input_tok_s_per_gpu",  # prefill throughput of a prefill pool
    "decode_tok_s_per_gpu",  # output tokens/s per GPU of a decode pool
    "tpot_ms",
    "ttft_ms",
    "tok_s_per_user",
    "request_latency_s",  # end-to-end latency of a request (or of a static batch)
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layout(_Frozen):
    tp: int = Field(ge=1)
    ep: int = Field(ge=1)
    dp: int = Field(ge=1)
    pp: int = Field(ge=1)
    disaggregated: bool  # prefill and decode on separate pools
    how: str = Field(min_length=1)  # "published: ..." or "inferred: ..."


class Precision(_Frozen):
    weights: Literal["bf16", "fp16", "fp8", "fp4", "int4", "not published"]
    kv: str = Field(min_length=1)  # a format, or "not published"


class Engine(_Frozen):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    graphs: bool = True  # CUDA/HIP graphs; false where the run was eager (vLLM's --enforce-eager)
    mem_util: Optional[float] = Field(None, gt=0, le=1)  # HBM share given to weights + KV, where published
    # the most sequences in flight per attention group, where published (vLLM's max_num_seqs, TensorRT-LLM's
    # max_batch_size); else the engine preset's fitted value applies
    max_seqs: Optional[int] = Field(None, ge=1)
    # speculative decoding the run used (MTP, a draft model), where its acceptance rate is not published: the
    # tokens per step are then unknown and the point is not projected
    speculative: Optional[str] = Field(None, min_length=1)


class Load(_Frozen):
    kind: Literal["concurrency", "request_rate", "batch", "offline", "interactivity"]
    value: Optional[float]  # null: offline, or a rate the source does not publish (MLPerf Server's)
    per: Literal["instance", "gpu", "user"]

    @model_validator(mode="after")
    def _value_given(self):
        if self.value is None and self.kind in ("concurrency", "batch", "interactivity"):
            raise ValueError(f"load {self.kind}: value must be given")
        if self.value is not None and self.kind == "offline":
            raise ValueError("load offline: value must be null")
        return self


class Lengths(_Frozen):
    """A dataset's per-request lengths, summarised as the moments the projection uses (mean prompt and output
    tokens, E[P²], E[P·O], E[O²]), and where the per-request lengths were read."""

    source: str = Field(min_length=10)
    requests: int = Field(ge=1)
    prompt: float = Field(ge=1)
    output: float = Field(ge=1)
    prompt_sq: float = Field(gt=0)
    prompt_output: float = Field(gt=0)
    output_sq: float = Field(gt=0)
    # a benchmark client's random lengths (vLLM's and SGLang's --random-range-ratio): each prompt and output drawn
    # independently and uniformly from [int(range_ratio·L), L] for the nominal L the source names the row by
    range_ratio: Optional[float] = Field(None, gt=0, le=1)
    nominal: Optional[tuple[int, int]] = None  # (prompt, output) L
    # the run's own mean output tokens per request where its results give it (MLPerf's summary: Tokens per second
    # ÷ Samples per second): the engine stops at its model's end of sequence, not at the length of the dataset's
    # reference answer. The requests' output lengths are then the dataset's scaled to that mean.
    generated: Optional[float] = Field(None, ge=1)
    generated_from: Optional[str] = Field(None, min_length=10)  # owner/repo@commit:path of the results it is read from

    def moments(self) -> LengthMoments:
        """What the projection takes: the dataset's moments, its outputs scaled to the run's mean where given."""
        s = (self.generated or self.output) / self.output
        return LengthMoments(self.prompt, self.output * s, self.prompt_sq, self.prompt_output * s, self.output_sq * s * s)

    @model_validator(mode="after")
    def _consistent(self):
        if (self.range_ratio is None) != (self.nominal is None):
            raise ValueError("lengths: range_ratio and nominal go together")
        if (self.generated is None) != (self.generated_from is None):
            raise ValueError("lengths: generated and generated_from go together")
        if self.range_ratio is not None:
            u = LengthMoments.uniform(*self.nominal, self.range_ratio)
            want = (u.prompt, u.output, u.prompt_sq, u.prompt_output, u.output_sq)
            got = (self.prompt, self.output, self.prompt_sq, self.prompt_output, self.output_sq)
            if any(abs(g - w) > 1e-4 * w for g, w in zip(got, want)):
                raise ValueError(f"lengths: moments {got} are not those of range ratio {self.range_ratio} on "
                                 f"{self.nominal}: {tuple(round(w, 1) for w in want)}")
        return self


class Metric(_Frozen):
    name: MetricName
    value: float = Field(gt=0)
    unit: str = Field(min_length=1)


class PublishedPoint(_Frozen):
    id: str
    model: str  # catalog id (family:flavor)
    model_published: str  # the name the source uses
    hardware: str  # catalog id
    unsupported: Optional[str] = None  # why model or hardware is not in the catalog (then it is not projected)
    n_gpus: int = Field(ge=1)  # GPUs of one model instance
    instances: int = Field(1, ge=1)  # identical instances measured together (MLPerf's systems run several)
    layout: Layout
    precision: Precision
    engine: Engine
    input_tokens: Optional[int] = Field(ge=1)  # null: not published (the point then cannot be projected)
    output_tokens: Optional[int] = Field(ge=1)
    lengths: Optional[Lengths] = None  # the lengths vary (a dataset's): input/output_tokens are their means
    load: Load
    metrics: tuple[Metric, ...] = Field(min_length=1)
    date: str = Field(min_length=4)
    source: str = Field(min_length=10)  # URL or owner/repo@commit:path
    source_group: str
    quote: str = Field(min_length=5)  # the table row or sentence the numbers come from
    split: Split
    notes: str

    @model_validator(mode="after")
    def _means_match(self):
        ln = self.lengths
        if ln is not None and (self.input_tokens != round(ln.prompt) or self.output_tokens != round(ln.moments().output)):
            raise ValueError(f"{self.id}: input/output_tokens must be the lengths' means (the run's output), rounded")
        return self

    @property
    def nominal_lengths(self) -> tuple[int, int]:
        """The (prompt, output) lengths the source names the point by: a client's nominal L where lengths were drawn
        at random around it, else the recorded means."""
        ln = self.lengths
        return ln.nominal if ln is not None and ln.nominal is not None else (self.input_tokens, self.output_tokens)

    def metric(self, name: str) -> Optional[float]:
        return next((m.value for m in self.metrics if m.name == name), None)


class SourceGroup(_Frozen):
    publisher: str  # groups of one publisher are not independent of each other
    name: str
    split: Split


class PublishedSet(_Frozen):
    not_found: tuple[str, ...]  # what was looked for and not found (or left out), and why
    source_groups: dict[str, SourceGroup]
    points: tuple[PublishedPoint, ...]

    @model_validator(mode="after")
    def _consistent(self):
        ids = [p.id for p in self.points]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate point ids: {dup}")
        for p in self.points:
            g = self.source_groups.get(p.source_group)
            if g is None:
                raise ValueError(f"{p.id}: unknown source_group {p.source_group!r}")
            if p.split != g.split:  # the split holds out whole sources
                raise ValueError(f"{p.id}: split {p.split} but source group {p.source_group} is {g.split}")
        return self


@lru_cache(maxsize=None)
def load_published(path: Path = DATA) -> PublishedSet:
    return PublishedSet.model_validate(yaml.safe_load(path.read_text()))
