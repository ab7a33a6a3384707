"""`kind: endpoint` workloads: which server, what it runs on (for $/M tokens), what to send, how hard, which SLOs.

    kind: endpoint
    name: my-vllm
    endpoint: {base_url: http://127.0.0.1:8000/v1, model: auto, api: chat}
    deployment: {hardware: h100_sxm, gpus: 8, price: {tier: hyperscaler}, model: llama3:70b}
    dataset: {kind: random, prompt_tokens: 1024, output_tokens: 256, range_ratio: 0.8, seed: 0}
    load: {concurrency: [1, 4, 16, 64], requests_per_level: 200, max_duration_s: 300}
    slo: {ttft_ms: 2000, tpot_ms: 50}
    timing: {warmup_requests: 8, repeats: 3}
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from moebench.specs import MODEL_NAME, IntelligenceSpec, PriceSpec
from moebench.strict import Strict, repeated


def _checked_url(v: str, field: str) -> str:
    """`v` as given, once its host and port parse (a port past 65535, an unclosed IPv6 bracket, no host are the
    file's fault, exit 3, not an unreachable server)."""
    from yarl import URL  # aiohttp's own URL type: what the client would parse at the first request

    try:
        url = URL(v)
    except ValueError as exc:
        raise ValueError(f"{field} {v!r} is not a URL ({exc})") from None
    if not url.host or url.port == 0:
        raise ValueError(f"{field} {v!r} names no {'host' if not url.host else 'port'} to reach")
    if any(c.isspace() for c in url.host):
        raise ValueError(f"{field} {v!r}: a host name has no spaces")
    if url.query_string or url.fragment:  # paths are appended to the API root; a metrics page needs neither
        raise ValueError(f"{field} {v!r}: takes no query or fragment")
    return v


class EndpointSpec(Strict):
    base_url: str = Field(description="the API root, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(default="auto", description="served model name; auto = the first of GET /models")
    api: Literal["chat", "completions"] = "chat"
    api_key_env: Optional[str] = Field(default=None, description="environment variable holding the bearer token")
    request_timeout_s: float = Field(default=600.0, gt=0)
    # ask the server to generate exactly max_tokens (vLLM/SGLang `ignore_eos`), when the probe finds it accepted
    ignore_eos: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url {v!r} must start with http:// or https://")
        return _checked_url(v, "base_url").rstrip("/")


class EnergySpec(Strict):
    """Where the server's energy is read, around every timed repeat: `nvml` (its GPUs are on this host; `gpus` are
    NVML / nvidia-smi indices), `dcgm` (a DCGM exporter's Prometheus text at `dcgm_url`; `gpus` are its `gpu`
    label values), or `catalog` (an estimate from the hardware's all-in power, never called measured)."""

    meter: Literal["catalog", "nvml", "dcgm"] = "catalog"
    gpus: Optional[list[Annotated[int, Field(ge=0)]]] = Field(default=None, min_length=1,
                                                                description="default 0 .. deployment.gpus - 1")
    dcgm_url: Optional[str] = Field(default=None, description="e.g. http://gpu-host:9400/metrics")

    @model_validator(mode="after")
    def _url(self) -> "EnergySpec":
        if (self.meter == "dcgm") != (self.dcgm_url is not None):
            raise ValueError("dcgm_url is given with meter: dcgm, and only then")
        if self.dcgm_url is not None and not self.dcgm_url.startswith(("http://", "https://")):
            raise ValueError(f"dcgm_url {self.dcgm_url!r} must start with http:// or https://")
        if self.dcgm_url is not None:
            _checked_url(self.dcgm_url, "dcgm_url")
        if self.meter == "catalog" and self.gpus is not None:
            raise ValueError("gpus names the GPUs a meter reads (meter: nvml or dcgm)")
        return self


class Deployment(Strict):
    """What the server runs on: the catalog hardware id and GPU count price the run; `model` (family:flavor) looks
    up its intelligence score in the catalog unless `intelligence.score` is given; `energy` says where J/token
    comes from."""

    hardware: Optional[str] = None
    gpus: int = Field(default=1, ge=1)
    price: PriceSpec = PriceSpec()
    model: Optional[str] = None
    intelligence: IntelligenceSpec = IntelligenceSpec()
    energy: EnergySpec = EnergySpec()
    expert_distribution_dir: Optional[str] = Field(
        default=None, description="SGLang: the server's SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, readable from here; "
        "with it, each level's expert load is recorded where the server has the expert-distribution endpoints")

    @model_validator(mode="after")
    def _meter_gpus(self) -> "Deployment":
        if self.energy.gpus is not None and len(self.energy.gpus) != self.gpus:
            raise ValueError(f"energy.gpus lists {len(self.energy.gpus)} GPU(s), the deployment has {self.gpus}")
        return self

    def meter_gpus(self) -> list[int]:
        return list(self.energy.gpus) if self.energy.gpus is not None else list(range(self.gpus))

    @field_validator("model")
    @classmethod
    def _family_flavor(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not MODEL_NAME.match(v):
            raise ValueError(f"model {v!r} must be written family:flavor (e.g. llama3:70b)")
        return v


class RandomDataset(Strict):
    """Random prompts; each request's lengths drawn uniformly from [n × range_ratio, n] with a fixed seed."""

    kind: Literal["random"]
    prompt_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=2, description="≥ 2: TPOT needs a token after the first")
    range_ratio: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0


class JsonlDataset(Strict):
    """A local file: JSONL with {"prompt": ..., "output_tokens": n} per line, or ShareGPT (a JSON array, or JSONL,
    of {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]})."""

    kind: Literal["jsonl"]
    path: str
    output_tokens: int = Field(default=256, ge=2, description="for entries that do not say")
    shuffle: bool = True
    seed: int = 0


class SharedPrefixDataset(Strict):
    """`groups` system prompts of `prefix_tokens` each; every request = one of them + its own question."""

    kind: Literal["shared_prefix"]
    groups: int = Field(default=4, ge=1)
    prefix_tokens: int = Field(ge=1)
    prompt_tokens: int = Field(ge=1, description="the question after the shared prefix")
    output_tokens: int = Field(ge=2)
    seed: int = 0


Dataset = Annotated[Union[RandomDataset, JsonlDataset, SharedPrefixDataset], Field(discriminator="kind")]


class Load(Strict):
    """Closed loop (`concurrency`: that many requests always in flight) or open loop (`request_rate` per second,
    arrivals Poisson, gamma with `burstiness` (< 1 burstier, 1 = Poisson) or constant). Each level ends after
    `requests_per_level` requests or `max_duration_s`, whichever comes first."""

    concurrency: Optional[list[Annotated[int, Field(ge=1, le=100_000)]]] = Field(default=None, min_length=1)
    request_rate: Optional[list[Annotated[float, Field(gt=0)]]] = Field(default=None, min_length=1)
    arrival: Literal["poisson", "gamma", "constant"] = "poisson"
    burstiness: float = Field(default=1.0, gt=0)
    max_concurrency: Optional[int] = Field(default=None, ge=1, description="open loop: in-flight cap (client queue)")
    requests_per_level: int = Field(default=100, ge=1, le=10_000_000)
    max_duration_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _one(self) -> "Load":
        if (self.concurrency is None) == (self.request_rate is None):
            raise ValueError("give exactly one of concurrency or request_rate")
        if self.arrival != "gamma" and self.burstiness != 1.0:
            raise ValueError("burstiness applies to arrival: gamma only")
        for name, levels in (("concurrency", self.concurrency), ("request_rate", self.request_rate)):
            twice = repeated(levels or [])
            if twice:  # two records of one level: compare and the gate would show one and hide the other
                raise ValueError(f"{name} {', '.join(f'{x:g}' for x in twice)} given twice")
        return self


class Slo(Strict):
    """A request is good when it meets every target given (goodput)."""

    ttft_ms: Optional[float] = Field(default=None, gt=0)
    tpot_ms: Optional[float] = Field(default=None, gt=0)
    e2e_ms: Optional[float] = Field(default=None, gt=0)


class EndpointTiming(Strict):
    warmup_requests: int = Field(default=4, ge=0, description="sent before each level, not counted")
    repeats: int = Field(default=1, ge=1, description="runs of each level: run-to-run samples for compare and gate")


class EndpointWorkload(Strict):
    kind: Literal["endpoint"]
    name: str
    description: str = ""
    endpoint: EndpointSpec
    deployment: Deployment = Deployment()
    dataset: Dataset
    load: Load
    slo: Slo = Slo()
    timing: EndpointTiming = EndpointTiming()
    tokenizer: Optional[str] = Field(default=None, description="local tokenizer folder: counts tokens when the "
                                     "server reports no usage, and sizes random prompts exactly")
    # tokens/s per user at which to read $/M off the sweep's throughput-interactivity Pareto front (interpolated)
    interactivity_targets: list[Annotated[float, Field(gt=0)]] = []
    max_failure_ratio: float = Field(default=0.05, ge=0, le=1, description="a level failing more fails the run")
    telemetry_interval_s: Optional[float] = Field(default=1.0, gt=0, description="how often the server's "
                                                  "Prometheus /metrics is sampled, when it has one; null: never")


def quick_workload(base_url: str) -> EndpointWorkload:
    """`moebench run --endpoint URL`: a short look with defaults (random 256-token prompts, 128 output tokens,
    concurrency 1 and 8, 32 requests each)."""
    from pydantic import ValidationError

    from moebench.errors import BadInput

    try:
        return EndpointWorkload(
            kind="endpoint", name="endpoint-quick", endpoint=EndpointSpec(base_url=base_url),
            dataset=RandomDataset(kind="random", prompt_tokens=256, output_tokens=128),
            load=Load(concurrency=[1, 8], requests_per_level=32, max_duration_s=120.0),
            timing=EndpointTiming(warmup_requests=2, repeats=1))
    except ValidationError as exc:
        raise BadInput(f"--endpoint: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
