"""Workload YAML -> frozen, validated objects. A typo is an error; one line names the file and the field."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from moebench.errors import BadInput
from moebench.specs import MODEL_NAME, IntelligenceSpec, PriceSpec  # noqa: F401 - also read from here
from moebench.strict import Strict, repeated


MAX_YAML_BYTES = 1 << 20  # a workload is a few hundred bytes; more is a wrong file (or /dev/zero)
MAX_YAML_NODES = 100_000  # counted with every alias expanded: a "billion laughs" document is refused, not built
MAX_YAML_DEPTH = 64


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where a float needs a dot: `25e-2` and `1e2` would be strings, which the strict
    models below then reject. Resolve floats as YAML 1.2 (and every other YAML tool) does. A key given twice in
    one mapping is an error (PyYAML would keep the last silently); a merge (`<<: *base`) may still override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _expanded_size(node: yaml.Node, depth: int, sizes: dict[int, int], open_: set[int]) -> int:
    """Nodes in the document once every alias is expanded, computed once per distinct node; a cycle or a size or
    depth beyond the limits raises yaml.YAMLError."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise yaml.YAMLError(f"an alias refers to a node that contains it (line {node.start_mark.line + 1})")
    if depth > MAX_YAML_DEPTH:
        raise yaml.YAMLError(f"nested more than {MAX_YAML_DEPTH} levels deep (line {node.start_mark.line + 1})")
    n = 1
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        open_.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else [c for kv in node.value for c in kv]
        for child in children:
            n += _expanded_size(child, depth + 1, sizes, open_)
            if n > MAX_YAML_NODES:
                raise yaml.YAMLError(f"more than {MAX_YAML_NODES} values once its aliases are expanded")
        open_.discard(key)
    sizes[key] = n
    return n


def read_yaml(text: str) -> Any:
    """One YAML document as plain data, or yaml.YAMLError / RecursionError for anything a workload cannot be
    (several documents, an alias bomb, deep nesting, a tag the safe loader refuses, a 5000-digit int)."""
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, 0, {}, set())
        try:
            return loader.construct_document(node)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors fail in their own ways (`!!timestamp` empty)
            raise yaml.YAMLError(f"a value it cannot build ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    finally:
        loader.dispose()


def read_text_file(p: Path, what: str, limit: int = MAX_YAML_BYTES) -> str:
    """The text of a regular file of at most `limit` bytes; a FIFO, a device (/dev/zero), a folder or a huge
    file is one BadInput line, decided before reading (opening a FIFO without O_NONBLOCK would wait forever)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadInput(f"{p}: no such {what}") from None
    except OSError as exc:
        raise BadInput(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise BadInput(f"{p}: {kind} (a {what} is read only from a regular file)")
        if st.st_size > limit:
            raise BadInput(f"{p}: {st.st_size} bytes, more than a {what} may hold ({limit} bytes)")
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise BadInput(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise BadInput(f"{p}: more than a {what} may hold ({limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{p}: cannot read {what} (not UTF-8 text: byte {exc.start})") from None


class ModelEntry(Strict):
    name: str
    layers: Optional[int] = Field(default=None, ge=1, description="run N of the L layers at real widths; extrapolate")
    weights: str = Field(default="random", description="random | path to a Hugging Face checkpoint directory")
    intelligence: Optional[IntelligenceSpec] = None

    @field_validator("name")
    @classmethod
    def _family_flavor(cls, v: str) -> str:
        if not MODEL_NAME.match(v):
            raise ValueError(f"model {v!r} must be written family:flavor (e.g. mixtral:8x7b)")
        return v


class Parallel(Strict):
    world_size: int = Field(default=1, ge=1)
    expert: int = Field(default=1, ge=1)
    tensor: int = Field(default=1, ge=1)
    attention: Literal["data", "tensor"] = "data"
    # at most a day: gloo takes milliseconds in a C int, and a hang should fail well before that
    collective_timeout_s: float = Field(default=60.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _divides(self) -> "Parallel":
        if self.world_size % (self.expert * self.tensor):
            raise ValueError(
                f"expert×tensor ({self.expert}×{self.tensor}) must divide world_size ({self.world_size})"
            )
        return self

    @property
    def data(self) -> int:
        return self.world_size // (self.expert * self.tensor)


class Scenario(Strict):
    prompt_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=2, description="≥ 2: TPOT needs a token after the first")
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)

    @field_validator("batch_sizes")
    @classmethod
    def _once_each(cls, v: list[int]) -> list[int]:
        # two records of one model × batch size share the key compare and the gate match on: one would hide the other
        twice = repeated(v)
        if twice:
            raise ValueError(f"batch size {', '.join(map(str, twice))} given twice")
        return v


class Timing(Strict):
    warmup: int = Field(default=1, ge=0)
    repeats: int = Field(default=5, ge=1)
    # `interleaved`: every model × batch size is set up first, then the repeats take turns (repeat 1 of each,
    # repeat 2 of each, …), so a burst of load on the machine lands on a few samples of every record instead of
    # on all samples of one (the regression gate's workload; all models must fit in memory at once)
    schedule: Literal["sequential", "interleaved"] = "sequential"


ROUTING = re.compile(r"^(model|uniform|zipf:\d+(\.\d+)?|hot:\d+)$")


class Workload(Strict):
    kind: Literal["model"] = "model"
    name: str
    description: str = ""
    models: list[Union[str, ModelEntry]] = Field(min_length=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    kernels: str = Field(default="auto", description="auto | torch | triton | an installed moebench.kernels plugin")
    parallel: Parallel = Parallel()
    scenario: Scenario
    timing: Timing = Timing()
    hardware: str = "auto"
    price: PriceSpec = PriceSpec()
    intelligence: IntelligenceSpec = IntelligenceSpec()
    routing: str = "model"
    profile: bool = False
    # single-GPU decode steps replay a captured CUDA graph (launch overhead otherwise dominates small batches)
    cuda_graph: bool = True
    # the same-run roofline probes (copy bandwidth, large matmul; ~5 s on a 2-core CPU) behind MFU/MBU against
    # measured roofs; off for runs that only need latencies (the regression gate's benchmark)
    roofs: bool = True
    seed: int = 0

    @field_validator("models")
    @classmethod
    def _entries(cls, v: list) -> list:
        entries = [ModelEntry(name=m) if isinstance(m, str) else m for m in v]
        names = [m.name for m in entries]
        for i, name in enumerate(names):
            if name in names[:i]:  # records are keyed by model × batch size: compare and the gate would show one
                raise ValueError(f"models[{i}] repeats models[{names.index(name)}] ({name}); another layer count or "
                                 "checkpoint of it is another workload")
        return entries

    @field_validator("kernels")
    @classmethod
    def _kernels(cls, v: str) -> str:
        from moebench.models.common.ops import backend_names

        names = backend_names()
        if v not in names:
            raise ValueError(f"kernels {v!r} must be one of {', '.join(names)} (installed moebench.kernels plugins)")
        return v

    @field_validator("routing")
    @classmethod
    def _routing(cls, v: str) -> str:
        if not ROUTING.match(v):
            raise ValueError(f"routing {v!r} must be one of model | uniform | zipf:<s> | hot:<expert>")
        return v

    @model_validator(mode="after")
    def _interleaving(self) -> "Workload":
        if self.timing.schedule == "interleaved" and (self.profile or self.parallel.world_size > 1):
            raise ValueError("timing.schedule: interleaved needs a single process without profile: true")
        return self

    @property
    def model_entries(self) -> list[ModelEntry]:
        return list(self.models)  # type: ignore[arg-type]


def _key(part: Any) -> str:
    """A key as it can be read on one line: a hostile key (a newline, a tab, spaces) is quoted."""
    s = str(part)
    return s if s.isprintable() and s == s.strip() and s else repr(s)


_SHOWN_ERRORS = 5  # a workload with more mistakes than this is fixed a few at a time; the line stays readable


def _format_validation(path: str, exc: ValidationError) -> str:
    """Every mistake (up to `_SHOWN_ERRORS`) on one line: `path: loc: msg; loc: msg (+N more)`."""
    errs = exc.errors()
    said = []
    for err in errs[:_SHOWN_ERRORS]:
        loc = ".".join(_key(p) for p in err["loc"] if not (isinstance(p, str) and p in ("ModelEntry", "str")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key missing"
        said.append(f"{loc}: {msg}" if loc else msg)
    more = f" (+{len(errs) - _SHOWN_ERRORS} more)" if len(errs) > _SHOWN_ERRORS else ""
    return f"{path}: {'; '.join(said)}{more}"


def parse_workload(data: Any, source: str = "<workload>"):
    """Validate a workload mapping; `kind: kernel` documents become `moebench.bench.schema.KernelWorkload`,
    `kind: endpoint` ones `moebench.endpoint.workload.EndpointWorkload`."""
    if not isinstance(data, dict):
        raise BadInput(f"{source}: a workload must be a YAML mapping, got {type(data).__name__}")
    try:
        if data.get("kind") == "kernel":
            from moebench.bench.schema import KernelWorkload

            return KernelWorkload.model_validate(data)
        if data.get("kind") == "endpoint":
            from moebench.endpoint.workload import EndpointWorkload

            return EndpointWorkload.model_validate(data)
        return Workload.model_validate(data)
    except ValidationError as exc:
        raise BadInput(_format_validation(source, exc)) from None


def load_workload(path: str | Path, *, resolve: bool = True):
    """Read, validate and (with `resolve`) check that every model name exists."""
    p = Path(path)
    text = read_text_file(p, "workload file")
    try:
        data = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{p}: broken YAML{where}: {problem}") from None
    except RecursionError:
        raise BadInput(f"{p}: broken YAML: nested too deeply") from None
    wl = parse_workload(data, str(p))
    if resolve and isinstance(wl, Workload):
        wl = _resolve(wl, p)
    if resolve and getattr(wl, "kind", None) == "endpoint" and wl.deployment.model:
        from moebench.models import resolve_name

        try:  # a typo would record the run under a name nothing lines up with, without counts or a score
            resolve_name(wl.deployment.model)
        except BadInput as exc:
            raise BadInput(f"{p}: deployment.model: {exc}; leave it out for a model moebench does not know "
                           "(the records then carry the served name)") from None
    return wl


def _memory_check(wl: Workload):
    """`run`'s memory check (models/memory.py) for this machine, as (name, cfg) -> None raising BadInput; None
    when the workload's device is not here (validating a GPU workload on a laptop): the run checks it there."""
    from moebench.arith import dtype_bytes
    from moebench.device import resolve_device, resolve_dtype
    from moebench.errors import EnvironmentProblem
    from moebench.machine import local_ranks
    from moebench.models.memory import check_fits

    try:
        dev = resolve_device(wl.device)
    except EnvironmentProblem:
        return None
    dbytes = dtype_bytes(str(resolve_dtype(wl.dtype, dev)).removeprefix("torch."))
    sc = wl.scenario
    here = local_ranks(wl.parallel.world_size) or 1  # outside a launcher: every rank on this host, as --nproc runs

    def fits(name: str, cfg) -> None:
        check_fits(name, cfg, batch=max(sc.batch_sizes), max_seq=sc.prompt_tokens + sc.output_tokens,
                   dtype_bytes=dbytes, device=dev, ranks_here=here)

    return fits


def _resolve(wl: Workload, p: Path) -> Workload:
    """Everything `run` would refuse, refused before anything runs: model names, checkpoints, layers, memory,
    hardware, its price tier, a hot expert the models lack. Checkpoint paths come back resolved against the file's folder."""
    from moebench.catalog import get_hardware
    from moebench.models import entry_arch
    from moebench.parallel.mesh import MeshShape, check_plan
    from moebench.routing import check_routing

    fits = _memory_check(wl)
    entries = []
    for i, m in enumerate(wl.model_entries):
        try:
            if m.weights != "random":  # a relative checkpoint path is relative to the workload file, as written
                m = m.model_copy(update={"weights": str(p.parent / Path(m.weights).expanduser())})
            cfg = entry_arch(m.name, m.weights, m.layers)[1]
            if fits is not None:
                fits(m.name, cfg)
        except BadInput as exc:
            raise BadInput(f"{p}: models[{i}]: {exc}") from None
        if wl.parallel.world_size > 1:
            check_plan(MeshShape.of(wl.parallel), cfg, m.name, wl.scenario.batch_sizes, str(p))
        if cfg.is_moe:
            try:
                check_routing(wl.routing, cfg.n_routed_experts, m.name)
            except BadInput as exc:
                raise BadInput(f"{p}: {exc}") from None
        entries.append(m)
    if entries != wl.model_entries:  # checkpoint paths resolved
        wl = wl.model_copy(update={"models": entries})
    if wl.hardware != "auto":
        try:
            hw = get_hardware(wl.hardware)
            if wl.price.tier is not None:
                hw.price(wl.price.tier)
        except BadInput as exc:
            raise BadInput(f"{p}: hardware: {exc}") from None
        if wl.device == "cpu" and hw.id != "cpu":  # its price, bandwidth and power would be charged to a CPU run
            raise BadInput(f"{p}: hardware: {hw.id} is a GPU but device is cpu (hardware: cpu, or auto)")
    return wl
