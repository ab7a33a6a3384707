"""One prepared GPU check that fits a 15-minute device lease (issue #20): does moebench measure a GPU truly?

    python benchmarks/gpu_truth.py --out $OUT            # on one H100/H200: ~6 min planned, <= 8 min budgeted
    python benchmarks/gpu_truth.py --dry-run --out /tmp/gt   # CPU (CI): the plan, and every stage at tiny sizes
    python benchmarks/gpu_truth.py --out $OUT --stages engine,projection   # a rerun of some stages
    python benchmarks/gpu_truth.py --out DIR --stages projection --engine-result RUN.json   # no GPU needed

Stages, each with its own time budget (a stage stops between steps once its budget is spent, and says so):
  gpu_check   every Triton kernel compiled and checked against its reference, pointer and TMA GEMM paths
              (benchmarks/gpu_check.py's checks; bf16 on a GPU, fp32 under TRITON_INTERPRET=1 on CPU)
  kernels     the fused-MoE layer at the decode and prefill points of workloads/kernels/*.yaml against the roofs
              measured in the same run and against torch grouped-mm (moebench.bench.runner.run_kernel_workload)
  engine      Llama-3-8B and Qwen3-30B-A3B on a few real-width layers, bf16, batch 1/8/64, CUDA-graph decode and
              eager decode side by side (moebench.engine.runner.run_workload, one call per mode): MBU/MFU
              against the run's measured roofs, the records' J/token (moebench.energy), the decode mode actually
              used. 4 of 32 layers run, so its B=1 MBU and graph speed-up are 4-layer figures (the LM head is a
              large share of a 4-layer decode step)
  projection  the uncalibrated projection of the graph run's records (catalog peaks x default efficiencies,
              what `moebench project` prints) against the measurement, and `--calibrate`'s fit of the same run

Writes gpu_truth.json (plan, every stage's result or error, the targets) and gpu_truth.md (the summary, also
printed) into --out, the engine's two result documents into --out/runs/, after every stage. Exit 0 when every
stage that ran succeeded (a missed target is a finding, not a failure), 5 when a stage raised or a kernel
check failed, 4 without a GPU (and without --dry-run) or pydantic, 1 when the plan no longer fits 8 minutes,
2 for a bad argument, 70 when the targets or summary raised (the stages' results are written first).
Device command line, and what to commit afterwards: kernels/NOTES.md, "A 15-minute GPU lease".
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGES = ("gpu_check", "kernels", "engine", "projection")
PLAN_LIMIT_S = 480.0  # the issue's bar: the whole plan within 8 minutes on one H100
KERNEL_WORKLOADS = ("qwen3-30b-a3b", "mixtral-8x7b", "gpt-oss-120b", "deepseek-v3")  # the engine's MoE first
DECODE_TOKENS = (1, 8, 64)  # the prefill point is each workload's largest T (512 rows per expert where it has one)
ENGINE_MODELS = ("llama3:8b", "qwen3-moe:30b-a3b")
TARGET_MBU_B1 = 0.60  # CUDA-graph decode, Llama-3-8B, B = 1, of the measured HBM roof
TARGET_GRAPH_SPEEDUP = 3.0  # eager TPOT / graph TPOT there
TARGET_MOE_DECODE = 70.0  # % of the measured roof at 8 <= T <= 64
TARGET_PROJECTION = 1.3  # uncalibrated projected / measured (or its inverse)
TARGET_MOE_PREFILL = 0.8  # kernels/NOTES.md: at >= 512 rows per expert, of cuBLAS dense for the same FLOPs

# ---- what the estimates stand on -------------------------------------------------------------------------------
# An H100 as this workplace's lease measured it (device KINDS.md, 2026-11-13): 3.0 TB/s device-to-device copy
# (read + write), 798 TFLOP/s bf16 8192^3 through cuBLAS.
H100_BYTES_PER_S, H100_FLOPS = 3.0e12, 798e12
# Achieved fraction of those assumed by the estimates: pessimistic on purpose (eager decode read 9-16 % of HBM on
# the H200; the fused MoE 45-105 %).
EST_EFF = 0.5
STARTUP_S = 15.0  # python + torch + triton import, CUDA context: a guess (no lease log timed it)
# kernels/NOTES.md: the whole gpu_check, 3 dtypes, "~2 min" on the H200, nearly all Triton compilation (its
# tensors are < 0.2 GB): 40 s a dtype.
GPU_CHECK_S_PER_DTYPE = 40.0
GPU_CHECK_REST_S = 10.0  # moe_align, routers, rmsnorm: compiled once each
COMPILE_S = 2.5  # one Triton GEMM specialisation (a token bucket's config): 120 s / ~48 fused-MoE compilations above
L2_FLUSH_S = 256 * 2**20 / H100_BYTES_PER_S  # the 256 MiB read before each timed repeat (moebench_kernels.timing)
ROOFS_S = 2.0  # 1 GiB copy x 10 and 8192^3 x 13 (~0.1 s of GPU) + the buffer fill and allocation
# The eager engine's host time per layer per forward: Llama-3-8B's eager TPOT on the H200, 31-41 ms over 32
# layers (issue #20) -> 1.3 ms; an MoE layer launches router, align, two GEMMs and a combine on top: 2x (a guess).
EAGER_LAYER_S = {"dense": 1.3e-3, "moe": 2.6e-3}
BUILD_BYTES_PER_S = 50e9  # random weights made on the GPU, one tensor at a time (a guess: a tenth of HBM at best)
GRAPH_CAPTURE_S = 1.0  # per batch size: two warm-up steps and the capture


@dataclass(frozen=True)
class Config:
    """What each stage runs: the GPU sizes, or the CPU dry run's tiny ones (the same code paths)."""

    device: str
    check_dtypes: tuple[str, ...]
    check_tiny: bool
    kernel_workloads: tuple[str, ...]
    kernel_tokens: Optional[tuple[int, ...]]  # None: DECODE_TOKENS + each workload's largest T
    kernel_shrink: bool  # tiny layer widths (CPU)
    kernel_timing: Optional[tuple[int, int]]  # (warmup, repeats); None: the workload's own
    roof_scale: float
    engine_models: tuple[str, ...]
    engine_layers: int
    engine_batches: tuple[int, ...]
    prompt: int
    output: int
    engine_timing: tuple[int, int]
    eager_roofs: bool = True  # the eager call measures its own roofs too (False: the dry run's ~5 s CPU probe once)


GPU = Config(device="cuda", check_dtypes=("bfloat16",), check_tiny=False, kernel_workloads=KERNEL_WORKLOADS,
             kernel_tokens=None, kernel_shrink=False, kernel_timing=None, roof_scale=1.0,
             engine_models=ENGINE_MODELS, engine_layers=4, engine_batches=(1, 8, 64), prompt=256, output=64,
             engine_timing=(1, 5))
DRY = Config(device="cpu", check_dtypes=("float32",), check_tiny=True, kernel_workloads=KERNEL_WORKLOADS,
             kernel_tokens=(1, 8), kernel_shrink=True, kernel_timing=(1, 2), roof_scale=0.02,
             engine_models=("llama3:debug", "qwen3-moe:debug"), engine_layers=2, engine_batches=(1, 2), prompt=16,
             output=4, engine_timing=(1, 2), eager_roofs=False)


# ---- the plan -------------------------------------------------------------------------------------------------------
@dataclass
class StagePlan:
    name: str
    est_s: float
    basis: str
    steps: list[str]
    budget_s: float = 0.0


def _kernel_workload(name: str):
    from moebench.workload import load_workload

    return load_workload(ROOT / "workloads" / "kernels" / f"{name}.yaml")


def kernel_tokens(cfg: Config, wl) -> list[int]:
    if cfg.kernel_tokens is not None:
        return list(cfg.kernel_tokens)
    return sorted(set(DECODE_TOKENS) | {max(wl.tokens)})


def _kernel_point_s(s, T: int, providers: int, calls: int) -> float:
    """One T of a kernel workload on an H100: a new config bucket to compile (2 GEMMs), then every provider's
    check, warm-up, graph probe and repeats at EST_EFF of the roofline floor, each after an L2 flush."""
    E, K, D, F = s.experts, s.top_k, s.hidden, s.ffn
    hit = E * (1 - (1 - K / E) ** T)
    nbytes, flops = hit * 3 * D * F * 2, 2 * 3 * D * F * T * K
    call = max(nbytes / H100_BYTES_PER_S, flops / H100_FLOPS) / EST_EFF + 30e-6 + hit * 50e-6 / providers
    return 2 * COMPILE_S + providers * calls * (call + L2_FLUSH_S)


def plan_gpu_check(cfg: Config) -> StagePlan:
    from benchmarks.gpu_check import CASES

    est = STARTUP_S + GPU_CHECK_S_PER_DTYPE * len(cfg.check_dtypes) + GPU_CHECK_REST_S
    return StagePlan("gpu_check", est,
                     f"process start-up {STARTUP_S:.0f} s (guess) + {GPU_CHECK_S_PER_DTYPE:.0f} s per dtype "
                     f"({'/'.join(cfg.check_dtypes)}): NOTES.md's ~2 min for 3 dtypes on the H200, compile-bound "
                     f"+ {GPU_CHECK_REST_S:.0f} s align/routers/rmsnorm",
                     [f"{len(CASES)} fused-MoE cases x pointer/TMA x {'/'.join(cfg.check_dtypes)}",
                      "moe_align", "routers", "rmsnorm"])


def plan_kernels(cfg: Config) -> StagePlan:
    total, steps = 0.0, []
    for name in cfg.kernel_workloads:
        wl = _kernel_workload(name)
        s = wl.shape
        weights = s.experts * 3 * s.hidden * s.ffn * 2
        warm, reps = wl.timing.warmup, wl.timing.repeats
        per_T = {T: _kernel_point_s(s, T, len(wl.providers), 1 + warm + 3 + reps + 1) for T in kernel_tokens(cfg, wl)}
        t = ROOFS_S + weights / BUILD_BYTES_PER_S + 1.0 + sum(per_T.values())
        total += t
        steps.append(f"{name} T={','.join(map(str, per_T))} ({t:.0f} s)")
    return StagePlan("kernels", total,
                     f"per workload: roofs {ROOFS_S:.0f} s + weights at {BUILD_BYTES_PER_S / 1e9:.0f} GB/s; per T: "
                     f"2 GEMM compilations x {COMPILE_S} s (NOTES.md's gpu_check time per config) + every provider's "
                     f"check, warm-up, graph probe and repeats at {EST_EFF:.0%} of max(bytes / "
                     f"{H100_BYTES_PER_S / 1e12:.1f} TB/s, FLOPs / {H100_FLOPS / 1e12:.0f} TFLOP/s) (H100 roofs "
                     f"measured on a lease, KINDS.md) + a 256 MiB L2 flush each, + 50 us host time per expert hit "
                     f"for torch-ref", steps)


def _engine_model_s(name: str, cfg: Config, graph: bool) -> float:
    from moebench.models import resolve_name

    spec_cfg = resolve_name(name)[1].with_layers(cfg.engine_layers)
    n = spec_cfg.num_hidden_layers
    kind = "moe" if spec_cfg.n_routed_experts else "dense"
    warm, reps = cfg.engine_timing
    t = ROOFS_S / 2 + 1.0 + spec_cfg.weight_bytes(2) / BUILD_BYTES_PER_S
    ctx = cfg.prompt + cfg.output // 2
    for b in cfg.engine_batches:
        prefill = max(b * cfg.prompt * spec_cfg.flops_per_token(cfg.prompt // 2) / (H100_FLOPS * EST_EFF),
                      n * EAGER_LAYER_S[kind])
        mem = spec_cfg.decode_bytes(b, ctx, 2) / (H100_BYTES_PER_S * EST_EFF)
        step = mem + 50e-6 if graph else max(mem, n * EAGER_LAYER_S[kind])
        t += (warm + reps) * (prefill + (cfg.output - 1) * step) + (GRAPH_CAPTURE_S if graph else 0.0)
    if kind == "moe" and graph:  # first in the process: its prefill buckets compile (decode's did in `kernels`)
        t += len(cfg.engine_batches) * 2 * COMPILE_S
    return t


def plan_engine(cfg: Config) -> StagePlan:
    steps, total = [], 0.0
    for graph in (True, False):
        t = sum(_engine_model_s(m, cfg, graph) for m in cfg.engine_models)
        total += t
        steps.append(f"{'cuda_graph' if graph else 'eager'} decode: {', '.join(cfg.engine_models)} x "
                     f"{cfg.engine_layers} layers x B={','.join(map(str, cfg.engine_batches))} ({t:.0f} s)")
    return StagePlan("engine", total,
                     f"per model and mode: roofs + random weights at {BUILD_BYTES_PER_S / 1e9:.0f} GB/s; per batch "
                     f"{sum(cfg.engine_timing)} generations of prefill {cfg.prompt} (FLOPs at {EST_EFF:.0%} of "
                     f"{H100_FLOPS / 1e12:.0f} TFLOP/s) + {cfg.output - 1} decode steps (graph: bytes at "
                     f"{EST_EFF:.0%} of {H100_BYTES_PER_S / 1e12:.1f} TB/s; eager: the larger of that and "
                     f"{EAGER_LAYER_S['dense'] * 1e3:.1f} ms host time per dense layer, "
                     f"{EAGER_LAYER_S['moe'] * 1e3:.1f} per MoE layer, from the H200's eager TPOT); "
                     f"{GRAPH_CAPTURE_S:.0f} s capture per batch; the MoE's prefill configs compile "
                     f"({COMPILE_S} s each)", steps)


def plan_projection(cfg: Config) -> StagePlan:
    return StagePlan("projection", 10.0, "pure Python: the calibration's grid searches, ~5 s on this project's "
                     "2-core CPU host (measured by the dry run), doubled", ["uncalibrated errors", "calibration"])


def make_plan(cfg: Config, limit_s: float = PLAN_LIMIT_S, wanted: Iterable[str] = STAGES) -> list[StagePlan]:
    """Every stage's H100 estimate; the `wanted` stages' budgets share `limit_s` in proportion (each may overrun
    its estimate by the same factor before it stops; a rerun of some stages gives them the whole of `limit_s`)."""
    plan = [plan_gpu_check(cfg), plan_kernels(cfg), plan_engine(cfg), plan_projection(cfg)]
    wanted = set(wanted)
    scale = limit_s / sum(p.est_s for p in plan if p.name in wanted)
    for p in plan:
        p.budget_s = p.est_s * scale if p.name in wanted else 0.0
    return plan


# ---- running stages ---------------------------------------------------------------------------------------------
class BudgetSpent(Exception):
    pass


@dataclass
class StageRun:
    """One stage's record: status ok | partial (budget spent part way) | skipped | failed, and what it made."""

    name: str
    budget_s: Optional[float]
    status: str = "not run"
    reason: Optional[str] = None
    wall_s: float = 0.0
    steps_done: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    result: Any = None
    error: Optional[str] = None
    _t0: float = 0.0

    def start(self) -> "StageRun":
        self._t0 = time.monotonic()
        return self

    def step(self, label: str) -> None:
        """Call before each step: raises BudgetSpent (recording the step as skipped) once the budget is spent."""
        self.check_budget(label)
        self.steps_done.append(label)

    def check_budget(self, before: str) -> None:
        """Raises BudgetSpent (recording `before` as skipped) once the budget is spent; within a step."""
        spent = time.monotonic() - self._t0
        if self.budget_s is not None and spent >= self.budget_s:
            self.steps_skipped.append(before)
            raise BudgetSpent(f"budget of {self.budget_s:.0f} s spent ({spent:.0f} s) before {before}")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("_")}


def run_stage(stage: StageRun, fn: Callable[[StageRun], Any], log: Callable[[str], None]) -> StageRun:
    """Run `fn(stage)`; its exception is recorded (the next stage runs), a spent budget makes it partial."""
    stage.start()
    log(f"== {stage.name} (budget {'none' if stage.budget_s is None else f'{stage.budget_s:.0f} s'})")
    try:
        result = fn(stage)  # a stage also keeps what it has made in stage.result as it goes: a spent budget keeps it
        if result is not None:
            stage.result = result
        stage.status = "ok"
    except BudgetSpent as exc:
        stage.status, stage.reason = ("partial" if len(stage.steps_done) else "skipped"), str(exc)
    except Exception as exc:  # noqa: BLE001 - a stage's failure is a finding; the next stage still runs
        stage.status, stage.reason = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        stage.error = traceback.format_exc(limit=8)
    stage.wall_s = time.monotonic() - stage._t0
    log(f"== {stage.name}: {stage.status} in {stage.wall_s:.1f} s" + (f" ({stage.reason})" if stage.reason else ""))
    return stage


def stage_gpu_check(cfg: Config, st: StageRun, log) -> dict[str, Any]:
    import torch

    from benchmarks import gpu_check

    dtypes = [getattr(torch, d) for d in cfg.check_dtypes]
    cases, sizes = ((gpu_check.TINY_CASES, gpu_check.TINY_SIZES) if cfg.check_tiny
                    else (gpu_check.CASES, gpu_check.Sizes()))
    checks: list[dict[str, Any]] = []
    out = st.result = {"checks": checks, "failed": [], "paths": {"pointer": 0, "tma": 0, "tma asked, pointer ran": 0}}

    def emit(c) -> None:
        checks.append(dataclasses.asdict(c))
        log(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        if not c.ok:
            out["failed"].append(c.name)
        if c.name.startswith("fused_moe"):
            path = "tma asked, pointer ran" if " tma asked" in c.name else "tma" if " tma " in c.name else "pointer"
            out["paths"][path] += 1
        # each check compiles its own configs: a slow compiler stops the stage between checks
        st.check_budget(f"the checks after {c.name}")

    st.step(f"{len(cases)} fused-MoE cases, moe_align, routers, rmsnorm")
    gpu_check.run_checks(cfg.device, dtypes, cases, sizes, emit=emit)
    return out


def stage_kernels(cfg: Config, st: StageRun, log) -> list[dict[str, Any]]:
    from moebench.bench.runner import run_kernel_workload

    docs: list[dict[str, Any]] = []
    st.result = docs
    for name in cfg.kernel_workloads:
        wl = _kernel_workload(name)
        tokens = kernel_tokens(cfg, wl)
        st.step(f"{name} T={','.join(map(str, tokens))}")
        upd: dict[str, Any] = {"tokens": tokens, "cpu": None}  # the GPU providers everywhere: triton says why not
        if cfg.kernel_shrink:
            s = wl.shape
            upd["shape"] = s.model_copy(update={"experts": min(s.experts, 8), "top_k": min(s.top_k, 2), "hidden": 64,
                                                "ffn": 32})
        if cfg.kernel_timing is not None:
            upd["timing"] = wl.timing.model_copy(update=dict(zip(("warmup", "repeats"), cfg.kernel_timing)))
        wl = wl.model_copy(update=upd)
        docs.append(run_kernel_workload(wl, device=cfg.device, console_err=log, roof_scale=cfg.roof_scale))
        _release(cfg.device)  # the layer's weights (22.5 GB for DeepSeek-V3) go back before the next
    return docs


def _release(device: str) -> None:
    if device == "cuda":
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def engine_workload(cfg: Config, graph: bool):
    from moebench.workload import parse_workload

    return parse_workload({
        "name": f"gpu-truth-{'graph' if graph else 'eager'}",
        "description": "issue #20: the engine's decode modes side by side (benchmarks/gpu_truth.py)",
        "models": [{"name": m, "layers": cfg.engine_layers} for m in cfg.engine_models],
        "device": cfg.device, "dtype": "auto", "kernels": "auto",
        "scenario": {"prompt_tokens": cfg.prompt, "output_tokens": cfg.output,
                     "batch_sizes": list(cfg.engine_batches)},
        "timing": {"warmup": cfg.engine_timing[0], "repeats": cfg.engine_timing[1]},
        "price": {"fallback_usd_per_gpu_hour": 0.10}, "cuda_graph": graph, "roofs": graph or cfg.eager_roofs,
    }, "gpu_truth")


def engine_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per record of a run_workload result: what the summary and the targets read. J/token is the record's own
    (moebench.energy: the counter around every timed repeat, scaled to full depth; docs/measure.md)."""
    rows = []
    for rec in doc["records"]:
        m, b = rec["metrics"], rec["batch_size"]
        eff = m["efficiency"]
        jpt = m["joules_per_token"]
        rows.append({"model": rec["model"], "batch": b, "decode_mode": rec["decode"]["mode"],
                     "decode_note": rec["decode"]["note"], "basis": rec["basis"],
                     "layers": f"{rec['layers_run']}/{rec['layers_total']}",
                     "ttft_ms": m["ttft_ms"]["median"], "tpot_ms": m["tpot_ms"]["median"],
                     "tpot_ms_p20_p80": [m["tpot_ms"]["p20"], m["tpot_ms"]["p80"]],
                     "mbu_decode_measured_roof": eff["mbu_decode_measured_roof"],
                     "mfu_prefill_measured_roof": eff["mfu_prefill_measured_roof"],
                     "mbu_decode_catalog": eff["mbu_decode"],
                     "joules_per_token": jpt["median"] if jpt else None, "energy_source": rec["energy_source"],
                     "energy_scope": rec["energy_scope"]})
    return rows


def stage_engine(cfg: Config, st: StageRun, out: Path, log) -> dict[str, Any]:
    from moebench.engine.runner import run_workload

    runs: dict[str, Any] = {}
    st.result = runs
    for mode, graph in (("cuda_graph", True), ("eager", False)):
        st.step(f"{mode} decode")
        doc, path = run_workload(engine_workload(cfg, graph), device=cfg.device, out_dir=out / "runs", log=log)
        runs[mode] = {"path": str(path), "roofs": doc["hardware"]["measured_roofs"], "rows": engine_rows(doc),
                      "kernels": doc["hardware"]["kernels"], "hardware_id": doc["hardware"]["id"]}
    return runs


def projection_errors(doc: dict[str, Any], calibrated: bool) -> tuple[list[dict[str, Any]], Optional[dict[str, Any]]]:
    """Per record: projected / measured TTFT and TPOT on the layers that ran (the engine's depth extrapolation
    undone), uncalibrated (catalog peaks x default efficiencies; measured roofs where the catalog has none, the
    CPU) or calibrated on `doc` itself and projected back (what `moebench project --calibrate` does)."""
    from moebench.catalog import get_hardware
    from moebench.projection import Assumptions, Layout, ServingScenario, calibrate, device_from_hardware, evaluate
    from moebench.projection import resolve_config
    from moebench.projection.device import norm_dtype

    hw_doc = doc["hardware"]
    hw = get_hardware(hw_doc["id"])
    dev = device_from_hardware(hw, measured_roofs=hw_doc.get("measured_roofs"))
    base = Assumptions(serving="static")  # `moebench run` prefills one batch, then decodes it
    calib = calibrate(doc, source=doc.get("run_id"), base=base) if calibrated else None
    a = base if calib is None else calib.assumptions(base, dev)
    dt = norm_dtype(hw_doc["dtype"])
    rows = []
    for rec in doc["records"]:
        cfg = resolve_config(rec["model"]).with_layers(rec["layers_run"])
        ex = rec["extrapolation"] or {"prefill_factor": 1.0, "decode_factor": 1.0}
        ttft = rec["metrics"]["ttft_ms"]["median"] / ex["prefill_factor"]
        tpot = rec["metrics"]["tpot_ms"]["median"] / ex["decode_factor"]
        b, s, o = rec["batch_size"], rec["prompt_tokens"], rec["output_tokens"]
        p = evaluate(cfg, Layout(1, 1, 1), dev, ServingScenario(s, o, weight_dtype=dt, kv_dtype=dt, act_dtype=dt), a, b)
        rows.append({"model": rec["model"], "batch": b, "ttft_ratio": p.ttft_ms / ttft, "tpot_ratio": p.tpot_ms / tpot,
                     "ttft_ms": {"measured": ttft, "projected": p.ttft_ms},
                     "tpot_ms": {"measured": tpot, "projected": p.tpot_ms}})
    fit = None
    if calib is not None:
        fit = {"compute": calib.efficiency.compute, "memory": calib.efficiency.memory,
               "host_us": dict(calib.host_us), "host_expert_us": dict(calib.host_expert_us), "method": calib.method,
               "roofs_basis": calib.device.roofs_basis}
    return rows, fit


def graph_result_path(engine: Optional[StageRun]) -> Optional[str]:
    """The CUDA-graph run's result file, if the engine stage got that far."""
    if engine is None or not isinstance(engine.result, dict) or "cuda_graph" not in engine.result:
        return None
    return engine.result["cuda_graph"]["path"]


def stage_projection(path: Optional[str], st: StageRun, log) -> dict[str, Any]:
    from moebench.results import load_result

    if path is None:
        raise RuntimeError("no engine result to project (the engine stage did not finish its CUDA-graph run; "
                           "--engine-result names one from an earlier run)")
    doc = load_result(path)
    res: dict[str, Any] = {"source": path, "uncalibrated": [], "calibrated": [], "fit": None}
    st.result = res
    st.step("uncalibrated")
    res["uncalibrated"] = projection_errors(doc, calibrated=False)[0]
    res["worst_uncalibrated_factor"] = max(max(r["ttft_ratio"], 1 / r["ttft_ratio"], r["tpot_ratio"],
                                               1 / r["tpot_ratio"]) for r in res["uncalibrated"])
    log(f"  uncalibrated projection vs {Path(path).name}: worst factor {res['worst_uncalibrated_factor']:.2f}x")
    st.step("calibrated")
    res["calibrated"], res["fit"] = projection_errors(doc, calibrated=True)
    return res


def failed_checks(stage: str, result: Any) -> list[str]:
    """The reference checks a stage's result failed: gpu_check's, and kernel points whose provider disagreed with
    fused_moe_ref (such a point is not timed)."""
    if stage == "gpu_check" and isinstance(result, dict):
        return list(result["failed"])
    if stage == "kernels" and isinstance(result, list):
        return [f"{d['workload']['name']} T={p['tokens']} {p['provider']}" for d in result for p in d["points"]
                if p["status"] == "failed"]
    return []


# ---- targets and summary -------------------------------------------------------------------------------------------
def kernel_rows(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload and T: the provider under test (triton; on CPU, where triton is skipped, torch-ref)."""
    rows = []
    for doc in docs:
        by_T: dict[int, dict[str, dict[str, Any]]] = {}
        for p in doc["points"]:
            by_T.setdefault(p["tokens"], {})[p["provider"]] = p
        for T, provs in by_T.items():
            p = provs.get("triton")
            if p is None or p["status"] != "ok":
                p = next((q for q in provs.values() if q["status"] == "ok" and q["provider"] != "dense-equiv"), None)
            if p is None:
                continue
            rows.append({"workload": doc["workload"]["name"], "T": T, "provider": p["provider"],
                         "rows_per_expert": p["rows_per_expert"], "time_us": p["time_us"]["median"],
                         "gbps": p["gbps"]["median"], "pct_roof_measured": p["pct_roof_measured"],
                         "x_grouped": p["vs"].get("torch-grouped"), "x_ref": p["vs"].get("torch-ref"),
                         "x_dense": p["vs"].get("dense-equiv"),
                         "cuda_graph": p["cuda_graph"],
                         "roofs": doc["hardware"]["measured_roofs"]})
    return rows


def _depth_caveat(layers: str) -> str:
    """What a few-layer engine figure means: the embedding and LM head run once whatever the depth, so at 4 of 32
    layers they are a large share of a decode step (the graph ratio and MBU of a full-depth model differ)."""
    run, total = layers.split("/")
    if run == total:
        return "full depth"
    return f"measured on {run} of {total} layers: a {run}-layer figure (the LM head is a large share of its step)"


def targets(stages: dict[str, StageRun], dry_run: bool) -> list[dict[str, Any]]:
    """The issue's bars, each measured (met True/False) or not (met None, and why)."""
    out: list[dict[str, Any]] = []

    def add(name: str, bar: str, value: Optional[float], met: Optional[bool], detail: str) -> None:
        if dry_run:
            met, detail = None, f"CPU dry run, no GPU claim ({detail})"
        out.append({"target": name, "bar": bar, "measured": value, "met": met, "detail": detail})

    eng = stages.get("engine")
    rows = {m: r["rows"] for m, r in eng.result.items()} if eng and isinstance(eng.result, dict) else {}
    dense = next((m for m in (rows.get("cuda_graph") or []) if m["batch"] == 1 and "llama" in m["model"]), None)
    eager = next((m for m in (rows.get("eager") or []) if m["batch"] == 1 and "llama" in m["model"]), None)
    if dense:
        mbu = dense["mbu_decode_measured_roof"]
        add("engine CUDA-graph decode MBU, Llama B=1", f">= {TARGET_MBU_B1:.0%} of measured HBM", mbu,
            None if mbu is None else mbu >= TARGET_MBU_B1,
            f"decode mode {dense['decode_mode']}; {_depth_caveat(dense['layers'])}")
    else:
        add("engine CUDA-graph decode MBU, Llama B=1", f">= {TARGET_MBU_B1:.0%} of measured HBM", None, None, "not run")
    if dense and eager:
        x = eager["tpot_ms"] / dense["tpot_ms"]
        add("CUDA graphs vs eager decode, Llama B=1", f">= {TARGET_GRAPH_SPEEDUP:.0f}x", x, x >= TARGET_GRAPH_SPEEDUP,
            f"TPOT {eager['tpot_ms']:.2f} -> {dense['tpot_ms']:.2f} ms; {_depth_caveat(dense['layers'])}")
    else:
        add("CUDA graphs vs eager decode, Llama B=1", f">= {TARGET_GRAPH_SPEEDUP:.0f}x", None, None, "not run")
    kern = stages.get("kernels")
    krows = kernel_rows(kern.result) if kern and isinstance(kern.result, list) else []
    dec = [r for r in krows if 8 <= r["T"] <= 64 and r["provider"] == "triton"]
    if dec:
        worst = min(dec, key=lambda r: r["pct_roof_measured"])
        pct = worst["pct_roof_measured"]
        add("fused MoE decode, 8 <= T <= 64", f">= {TARGET_MOE_DECODE:.0f}% of measured roof", pct,
            pct >= TARGET_MOE_DECODE, f"worst {worst['workload']} T={worst['T']} ({worst['provider']})")
    else:
        add("fused MoE decode, 8 <= T <= 64", f">= {TARGET_MOE_DECODE:.0f}% of measured roof", None, None,
            "triton not timed here")
    vs = [r for r in krows if r["x_grouped"] is not None and r["provider"] == "triton"]
    if vs:
        worst = min(vs, key=lambda r: r["x_grouped"])
        add("fused MoE never slower than grouped-mm", ">= 1.00x at every point", worst["x_grouped"],
            worst["x_grouped"] >= 1.0, f"worst {worst['workload']} T={worst['T']}")
    else:
        add("fused MoE never slower than grouped-mm", ">= 1.00x at every point", None, None,
            "triton or torch-grouped not timed here")
    pre = [r for r in krows if r["rows_per_expert"] >= 512 and r["provider"] == "triton" and r["x_dense"] is not None]
    bar = f">= {TARGET_MOE_PREFILL:.0%} of dense-equiv (cuBLAS, same FLOPs)"
    if pre:
        worst = min(pre, key=lambda r: r["x_dense"])
        add("fused MoE prefill, >= 512 rows per expert", bar, worst["x_dense"], worst["x_dense"] >= TARGET_MOE_PREFILL,
            f"worst {worst['workload']} T={worst['T']}")
    else:
        add("fused MoE prefill, >= 512 rows per expert", bar, None, None, "triton not timed at 512 rows per expert")
    proj = stages.get("projection")
    w = proj.result.get("worst_uncalibrated_factor") if proj and isinstance(proj.result, dict) else None
    if w is not None:
        add("uncalibrated projection vs measurement", f"within {TARGET_PROJECTION}x (TTFT and TPOT, every record)", w,
            w <= TARGET_PROJECTION, "graph run, layers that ran")
    else:
        add("uncalibrated projection vs measurement", f"within {TARGET_PROJECTION}x", None, None, "not run")
    return out


def _f(x: Optional[float], fmt: str = ".2f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _plan_item(p: dict[str, Any]) -> str:
    return f"{p['name']} {p['est_s']:.0f}"


def _kernels_md(docs: list[dict[str, Any]], brief: bool) -> list[str]:
    rows = kernel_rows(docs)
    roofs = docs[0]["hardware"]["measured_roofs"]
    head = (f"**fused MoE** (% of the roofs measured in the same run: {roofs['mem_gbps']:.0f} GB/s, "
            f"{roofs['matmul_tflops']:.1f} TFLOP/s; × = other's time / this one's)")
    if brief:  # one line per workload
        out = ["", head]
        for name in dict.fromkeys(r["workload"] for r in rows):
            mine = [r for r in rows if r["workload"] == name]
            pct = "/".join(_f(r["pct_roof_measured"], ".0f") for r in mine)
            xg = [r["x_grouped"] for r in mine if r["x_grouped"] is not None]
            xd = [r["x_dense"] for r in mine if r["rows_per_expert"] >= 512 and r["x_dense"] is not None]
            out.append(f"- {name} ({mine[0]['provider']}), T = {'/'.join(str(r['T']) for r in mine)}: % roof {pct}; "
                       f"× grouped ≥ {_f(min(xg) if xg else None)}"
                       + (f"; × dense at 512 rows/expert {xd[0]:.2f}" if xd else ""))
        return out
    out = ["", head, "",
           "| workload | T | rows/expert | provider | µs | GB/s | % roof | × grouped | × ref | × dense |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['workload']} | {r['T']} | {r['rows_per_expert']:.1f} | {r['provider']}"
                   f"{' (graph)' if r['cuda_graph'] else ''} | {r['time_us']:.1f} | {r['gbps']:.0f} | "
                   f"{_f(r['pct_roof_measured'], '.0f')} | {_f(r['x_grouped'])} | {_f(r['x_ref'])} | "
                   f"{_f(r['x_dense'])} |")
    return out


def _engine_md(runs: dict[str, Any]) -> list[str]:
    """One row per model and batch: the CUDA-graph run beside the eager one."""
    graph = {(r["model"], r["batch"]): r for r in (runs.get("cuda_graph") or {}).get("rows", [])}
    eager = {(r["model"], r["batch"]): r for r in (runs.get("eager") or {}).get("rows", [])}
    out = ["", "**engine** (full-depth TPOT extrapolated from the layers run; MBU/MFU against the run's measured "
           "roofs; 'mode' = the decode each run actually used, graph run / eager run)", "",
           "| model | B | mode | TTFT ms | TPOT ms graph | TPOT ms eager | graph × | MBU graph | MBU eager | "
           "MFU prefill | J/token graph | J/token eager |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in dict.fromkeys([*graph, *eager]):
        g, e = graph.get(key, {}), eager.get(key, {})
        x = e["tpot_ms"] / g["tpot_ms"] if g and e else None
        first = g or e
        out.append(f"| {key[0]} | {key[1]} | {g.get('decode_mode', '—')} / {e.get('decode_mode', '—')} | "
                   f"{first['ttft_ms']:.1f} | {_f(g.get('tpot_ms'), '.2f')} | {_f(e.get('tpot_ms'), '.2f')} | "
                   f"{_f(x)} | "
                   f"{_f(g.get('mbu_decode_measured_roof'), '.0%')} | {_f(e.get('mbu_decode_measured_roof'), '.0%')} | "
                   f"{_f(first['mfu_prefill_measured_roof'], '.0%')} | {_f(g.get('joules_per_token'), '.3g')} | "
                   f"{_f(e.get('joules_per_token'), '.3g')} |")
    notes = {r["decode_note"] for run in runs.values() for r in run["rows"] if r["decode_note"]}
    out += [f"\nnote: {n}" for n in sorted(notes)]
    first = next(iter(runs.values()))
    roofs = next((r["roofs"] for r in runs.values() if r["roofs"]), None)
    roof_text = "not measured" if roofs is None else (f"{roofs['mem_gbps']:.0f} GB/s, "
                                                       f"{roofs['matmul_gflops'] / 1e3:.1f} TFLOP/s")
    scope = first["rows"][0].get("energy_scope") if first["rows"] else None
    out.append(f"\nengine roofs: {roof_text}; kernels {first['kernels']}; energy: "
               f"{first['rows'][0]['energy_source'] if first['rows'] else '—'}" + (f" ({scope})" if scope else ""))
    return out


def _projection_md(res: dict[str, Any]) -> list[str]:
    out = ["", f"**projection** of {Path(res['source']).name} (projected / measured, on the layers that ran)", "",
           "| model | B | TTFT uncal. | TPOT uncal. | TTFT calibrated | TPOT calibrated |",
           "|---|---:|---:|---:|---:|---:|"]
    cal = {(c["model"], c["batch"]): c for c in res["calibrated"]}
    for u in res["uncalibrated"]:
        c = cal.get((u["model"], u["batch"]), {})
        out.append(f"| {u['model']} | {u['batch']} | {u['ttft_ratio']:.2f} | {u['tpot_ratio']:.2f} | "
                   f"{_f(c.get('ttft_ratio'))} | {_f(c.get('tpot_ratio'))} |")
    fit = res["fit"]
    if fit:
        out.append(f"\ncalibration: compute {fit['compute']:.3g}, memory {fit['memory']:.3g} of the "
                   f"{fit['roofs_basis']} roofs; host µs/op {({k: round(v) for k, v in fit['host_us'].items()})}")
    return out


def summary_md(doc: dict[str, Any], stages: dict[str, StageRun], brief: bool = False) -> str:
    """The markdown summary; `brief` (the console's one screen) gives each kernel workload one line."""
    lines = [f"# gpu_truth: {doc['device_name']} ({'CPU dry run, no GPU claim' if doc['dry_run'] else 'GPU'}), "
             f"{doc['created_utc']}, git {doc['environment'].get('git_sha') or '?'}", "",
             f"Plan (H100 estimates): {' + '.join(_plan_item(p) for p in doc['plan'])} = "
             f"{doc['plan_total_s']:.0f} s (limit {PLAN_LIMIT_S:.0f}); wall {doc['wall_s']:.0f} s.", "",
             "| stage | status | wall s | budget s | note |", "|---|---|---:|---:|---|"]
    for st in stages.values():
        lines.append(f"| {st.name} | {st.status} | {st.wall_s:.1f} | {_f(st.budget_s, '.0f')} | {st.reason or ''} |")
    res = {name: st.result for name, st in stages.items() if st.result}
    if "gpu_check" in res:
        r = res["gpu_check"]
        paths = ", ".join(f"{k} {v}" for k, v in r["paths"].items())
        lines += ["", f"**gpu_check**: {len(r['checks']) - len(r['failed'])}/{len(r['checks'])} ok (fused-MoE paths: "
                  f"{paths})" + (f"; FAILED: {', '.join(r['failed'])}" if r["failed"] else "")]
    if "kernels" in res:
        lines += _kernels_md(res["kernels"], brief)
    if "engine" in res:
        lines += _engine_md(res["engine"])
    if "projection" in res:
        lines += _projection_md(res["projection"])
    lines += ["", "**targets**", "", "| target | bar | measured | met | detail |", "|---|---|---:|---|---|"]
    for t in doc["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        lines.append(f"| {t['target']} | {t['bar']} | {_f(t['measured'], '.3g')} | {met} | {t['detail']} |")
    return "\n".join(lines) + "\n"


def ensure_entry_points() -> Optional[Path]:
    """moebench finds its models, hardware catalog and kernel backends through entry points, which exist once it
    is pip-installed; the working tree a lease runs is not installed (without this, every model is 'unknown').
    Then a moebench *.dist-info naming them, read from pyproject.toml, goes onto sys.path from a temporary folder,
    which is returned (None when moebench is installed)."""
    import importlib.metadata as md

    if md.entry_points(group="moebench.models"):
        return None
    import tempfile
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tmp = Path(tempfile.mkdtemp(prefix="gpu_truth-"))
    info = tmp / f"moebench-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: moebench\nVersion: {project['version']}\n")
    groups = [f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
              for g, eps in project["entry-points"].items()]
    (info / "entry_points.txt").write_text("\n".join(groups))
    sys.path.insert(0, str(tmp))
    importlib.invalidate_caches()
    return tmp


# ---- main ---------------------------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_truth.json, gpu_truth.md and runs/ ($OUT on a lease)")
    ap.add_argument("--dry-run", action="store_true", help="CPU: plan for an H100, then every stage at tiny sizes")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--engine-result", default=None,
                    help="the CUDA-graph engine result the projection reads when this run has none (an earlier "
                         "run's runs/*-gpu-truth-graph-*.json): `--stages projection` needs no GPU")
    ap.add_argument("--budget-s", type=float, default=PLAN_LIMIT_S,
                    help="what the stages' budgets share (in proportion to their estimates); GPU runs only")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown or not wanted:
        what = f"unknown {', '.join(unknown)}" if unknown else "no stage named"
        print(f"error: --stages: {what}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.budget_s) and args.budget_s > 0):
        print(f"error: --budget-s: {args.budget_s:g} is not a positive number of seconds", file=sys.stderr)
        return 2
    if args.dry_run:  # before anything imports triton (its interpreter is bound at import) or a BLAS
        os.environ["TRITON_INTERPRET"] = "1"
        # one thread: on a small shared CI host, BLAS threads left spinning made 10 µs ops take 100 ms
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    # the working tree a lease runs is not installed: moebench, moebench_kernels and benchmarks/ (a namespace
    # package: gpu_check beside this file) import from its root
    sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "kernels")) if p not in sys.path]
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    missing = [m for m in ("pydantic", "yaml", "rich") if importlib.util.find_spec(m) is None]
    if missing:  # the device image has no pydantic: it travels as wheels (kernels/NOTES.md)
        print(f"error: {', '.join(missing)} not installed here: carry the wheels as kernels/NOTES.md's "
              "'A 15-minute GPU lease' says", file=sys.stderr)
        return 4
    bootstrap = ensure_entry_points()
    if bootstrap is not None:
        import atexit
        import shutil

        atexit.register(shutil.rmtree, bootstrap, True)
        log(f"moebench is not installed here: its entry points from pyproject.toml, through {bootstrap}")
    import torch

    from moebench.results import environment, write_atomic, write_text_atomic

    if not args.dry_run and not torch.cuda.is_available() and set(wanted) - {"projection"}:
        print("error: no CUDA GPU is visible to torch; run with --dry-run on a CPU", file=sys.stderr)
        return 4
    cfg = DRY if args.dry_run else GPU
    plan = make_plan(GPU, args.budget_s, wanted)  # always the H100 plan: the dry run checks that it fits
    total = sum(p.est_s for p in plan)
    for p in plan:
        log(f"plan {p.name}: {p.est_s:.0f} s (budget {p.budget_s:.0f} s) - {'; '.join(p.steps)}")
    log(f"plan total {total:.0f} s on one H100 (limit {PLAN_LIMIT_S:.0f} s)")
    if total > PLAN_LIMIT_S:  # the issue's bar: what a lease runs must fit 8 minutes of an H100
        print(f"error: the plan takes {total:.0f} s on one H100, over the {PLAN_LIMIT_S:.0f} s a lease allows it; "
              "trim a stage", file=sys.stderr)
        return 1
    out = Path(args.out)
    doc: dict[str, Any] = {
        "kind": "gpu_truth", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dry_run": args.dry_run, "argv": sys.argv[1:] if argv is None else argv,
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
        "config": dataclasses.asdict(cfg), "plan": [dataclasses.asdict(p) for p in plan], "plan_total_s": total,
        "plan_limit_s": PLAN_LIMIT_S, "environment": environment(), "stages": {}, "targets": [], "wall_s": 0.0,
    }
    budgets = {p.name: (None if args.dry_run else p.budget_s) for p in plan}
    stages: dict[str, StageRun] = {}
    runners: dict[str, Callable[[StageRun], Any]] = {
        "gpu_check": lambda st: stage_gpu_check(cfg, st, log),
        "kernels": lambda st: stage_kernels(cfg, st, log),
        "engine": lambda st: stage_engine(cfg, st, out, log),
        "projection": lambda st: stage_projection(graph_result_path(stages.get("engine")) or args.engine_result, st,
                                                  log),
    }

    def save() -> None:
        """The stages first: a bug in the targets or the summary must not lose what a lease measured."""
        doc["stages"] = {k: v.to_json() for k, v in stages.items()}
        doc["wall_s"] = time.monotonic() - t_start
        write_atomic(out / "gpu_truth.json", doc)
        try:
            doc["targets"] = targets(stages, args.dry_run)
            md = summary_md(doc, stages)
        except Exception as exc:  # noqa: BLE001 - recorded in the document, which keeps every stage's result
            doc["summary_error"] = f"{type(exc).__name__}: {exc}"
            doc["summary_traceback"] = traceback.format_exc(limit=8)
            log(f"targets/summary failed ({doc['summary_error']}); the stages' results are in gpu_truth.json")
            write_atomic(out / "gpu_truth.json", doc)
            return
        doc.pop("summary_error", None)
        doc.pop("summary_traceback", None)
        write_atomic(out / "gpu_truth.json", doc)
        write_text_atomic(out / "gpu_truth.md", md)

    for name in STAGES:
        st = StageRun(name, budgets[name])
        if name not in wanted:
            st.status, st.reason = "skipped", "not in --stages"
        else:
            run_stage(st, runners[name], log)
            wrong = failed_checks(name, st.result)
            if wrong:  # a kernel that computes the wrong numbers is a failure, whatever else the stage did
                st.status = "failed"
                st.reason = f"{len(wrong)} checks against the reference failed: {', '.join(wrong[:3])}"
        stages[name] = st
        save()
    if "summary_error" in doc:  # a bug here, not a finding: the stages' results are saved all the same
        print(f"internal error: targets/summary: {doc['summary_error']}; every stage's result is in "
              f"{out / 'gpu_truth.json'}", file=sys.stderr)
        return 70
    print(summary_md(doc, stages, brief=True))
    bad = [s.name for s in stages.values() if s.status == "failed"]
    log(f"wrote {out / 'gpu_truth.json'} and gpu_truth.md" + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 5 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
