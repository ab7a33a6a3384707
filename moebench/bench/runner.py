"""Run a `kind: kernel` workload: every token count × provider, checked against the reference, then timed.

Each point reports the median time with p20-p80 and n, achieved GB/s and TFLOP/s, and % of the roofline, where
bytes = the weights of the experts the generated routing actually touches (+ x and y) and FLOPs = 2·3·D·F per
routed row; the roofline floor is max(bytes / bandwidth, FLOPs / matmul rate), against the roofs measured at the
start of this run and against the catalog's peaks. On CPU (a shared host whose bandwidth drifts ±15% within
seconds) the roofs are also measured at every token count, a round of shorter probes interleaved with each round
of the providers' repeats, so the roof is measured under the load the point was timed under: `point_roofs` holds
their medians and p20-p80, `pct_roof_measured` is against those, `pct_roof_start` against the start-of-run ones,
and `pct_roof_fma_peak` against them with the compute ceiling raised to the register-FMA peak measured in the
same rounds (BLAS under-reads that ceiling on CPU: the MoE kernel outran it at compute-bound points). `vs` holds,
per other provider, its median over this one's (> 1: this provider is faster). On CPU the result is labelled CPU
and makes no GPU claim.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from moebench import arith
from moebench.bench.providers import GRAPHABLE, Layer, Unsupported, make_layer, make_runner, uniform_routing
from moebench.bench.schema import KernelWorkload
from moebench.bench.timing import CpuRoofProbe, CudaTimer, measure_roofs, time_cpu, time_cuda
from moebench.errors import BadInput, EnvironmentProblem
from moebench.outdir import save_stopped
from moebench.progress import QUIET, Progress
from moebench.results import new_doc, stat

SHORT = {"torch-ref": "ref", "torch-grouped": "grouped", "torch-loop": "loop", "transformers-eager": "hf-eager",
         "transformers-grouped": "hf-grouped", "dense-equiv": "dense"}
# relative Frobenius error allowed against fused_moe_ref before a provider is timed
CHECK_TOL = {torch.float32: 1e-4, torch.float64: 1e-10, torch.bfloat16: 2.5e-2, torch.float16: 1e-2}
POINT_ROOF_SCALE = 0.125  # CPU probe rounds within each point: 128 MiB (past the LLC), 2048^3 in the run dtype


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _available_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"]
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_layer_fits(wl: KernelWorkload, dev: str) -> int:
    """The layer's weight bytes on `dev`, where they take at most 80 % of its free memory; otherwise BadInput
    (exit 3), as a model too big for the machine is. `wl` already resolved for `dev` (for_device)."""
    from moebench.device import resolve_dtype

    dtype = resolve_dtype(wl.dtype, dev)
    s = wl.shape
    weight_bytes = s.experts * arith.expert_params(s.hidden, s.ffn, s.bias) * arith.dtype_bytes(str(dtype))
    avail = _available_bytes(dev)
    if weight_bytes > 0.8 * avail:
        raise BadInput(
            f"{wl.name}: the layer's weights take {weight_bytes / 1e9:.1f} GB in {str(dtype)[6:]}, more than 80% of "
            f"the {avail / 1e9:.1f} GB free on {dev}; use a smaller shape or a bigger machine")
    return weight_bytes


def layer_cost(T: int, K: int, D: int, F: int, experts_touched: int, elem_bytes: int, bias: bool) -> tuple[int, int]:
    """(minimum bytes moved, FLOPs) of one fused-MoE call: touched experts' weights + x + y; 2·3·D·F per row."""
    w = experts_touched * arith.expert_params(D, F, bias) * elem_bytes
    return w + 2 * T * D * elem_bytes, 2 * arith.glu_params(D, F) * T * K


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    num = torch.linalg.vector_norm((y.double() - ref.double()).flatten())
    return float(num / max(float(torch.linalg.vector_norm(ref.double().flatten())), 1e-30))


def _pct(floor_s: Optional[float], ms: float) -> Optional[float]:
    return None if floor_s is None else 100.0 * floor_s / (ms / 1e3)


def _floor_s(nbytes: int, flops: int, bytes_per_s: Optional[float], flops_per_s: Optional[float]) -> Optional[float]:
    if not bytes_per_s or not flops_per_s:
        return None
    return max(nbytes / bytes_per_s, flops / flops_per_s)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{model or 'CPU'}, {torch.get_num_threads()} threads"


def _hardware(wl: KernelWorkload, dev: str, dtype: torch.dtype) -> dict[str, Any]:
    from moebench.catalog import get_hardware
    from moebench.device import detect_hardware

    if dev == "cpu" and wl.hardware not in ("auto", "cpu"):  # GPU peaks would judge CPU times, as with models
        raise BadInput(f"{wl.name}: hardware: {wl.hardware} is a GPU but the kernels run on cpu "
                       "(hardware: cpu, or auto)")
    try:
        hid = detect_hardware(dev) if wl.hardware == "auto" else wl.hardware
        hw = get_hardware(hid)
        peak_tflops = hw.peak_flops(str(dtype).removeprefix("torch."))
        return {"id": hw.id, "name": hw.name, "catalog_peak_tflops": peak_tflops / 1e12 if peak_tflops else None,
                "catalog_hbm_tbps": hw.hbm_tbps}
    except (BadInput, EnvironmentProblem) as exc:  # an uncatalogued GPU still gets measured roofs
        return {"id": None, "name": None, "catalog_peak_tflops": None, "catalog_hbm_tbps": None, "note": str(exc)}


def run_kernel_workload(wl: KernelWorkload, *, device: Optional[str] = None,
                        console_err: Callable[[str], None] = _stderr, roof_scale: float = 1.0,
                        progress: Progress = QUIET, partial_path: Optional[Path] = None) -> dict[str, Any]:
    """Run `wl` on `device` (overrides wl.device); returns the JSON-able result document (not written).
    `roof_scale` < 1 shrinks the roof probes (tests). When the run is stopped once the roofs are measured (Ctrl-C,
    SIGTERM, an error), the points measured so far are saved to `partial_path`, if given, as a model workload
    saves its records (moebench.outdir.save_stopped): incomplete, with the reason, named in the error."""
    from moebench.device import resolve_device, resolve_dtype
    from moebench_kernels.fused_moe import fused_moe_ref

    dev = resolve_device(device or wl.device)
    wl = wl.for_device(dev)
    dtype = resolve_dtype(wl.dtype, dev)
    s = wl.shape
    elem = arith.dtype_bytes(str(dtype))
    weight_bytes = check_layer_fits(wl, dev)
    hardware = _hardware(wl, dev, dtype)
    console_err(f"{wl.name}: measuring roofs on {dev} …")
    try:
        roofs = measure_roofs(dev, dtype, roof_scale)  # on CPU in the run's dtype, as its points' probes (below)
        hardware.update(device=dev, dtype=str(dtype).removeprefix("torch."), measured_roofs=roofs,
                        device_name=torch.cuda.get_device_name() if dev == "cuda" else _cpu_name(),
                        label=("GPU" if dev == "cuda" else "CPU (host numbers; no GPU claim)"))
        console_err(f"{wl.name}: roofs {roofs['mem_gbps']:.1f} GB/s, {roofs['matmul_tflops']:.3f} TFLOP/s; "
                    f"allocating {weight_bytes / 1e9:.2f} GB of weights …")
        layer = make_layer(s, dtype, dev, wl.seed)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM before any point: the one line says nothing was saved
        if partial_path is not None:
            save_stopped(exc, {}, partial_path)
        raise
    timer = CudaTimer() if dev == "cuda" else None
    meas = (roofs["mem_gbps"] * 1e9, roofs["matmul_tflops"] * 1e12)
    cat = ((hardware["catalog_hbm_tbps"] or 0) * 1e12, (hardware["catalog_peak_tflops"] or 0) * 1e12)
    started = time.time()
    doc = new_doc(kind="kernel", workload=wl.model_dump(mode="json"), hardware=hardware, points=[])
    points: list[dict[str, Any]] = doc["points"]
    try:
        for T in progress.track(wl.tokens, "kernel points (tokens)"):
            w_TK, ids_TK = uniform_routing(T, s.top_k, s.experts, wl.seed + T, dev)
            x_TD = torch.randn(T, s.hidden, generator=torch.Generator().manual_seed(wl.seed + 7 * T)).to(dev, dtype)
            touched = int(torch.unique(ids_TK[ids_TK >= 0]).numel())
            expected = arith.experts_touched(s.experts, s.top_k, T)
            nbytes, flops = layer_cost(T, s.top_k, s.hidden, s.ffn, touched, elem, s.bias)
            ref = fused_moe_ref(x_TD, layer.w13_E2FD, layer.w2_EDF, w_TK, ids_TK, s.activation, layer.b13_E2F,
                                layer.b2_ED)
            row = [_prepare(prov, layer, x_TD, w_TK, ids_TK, ref, dtype) for prov in wl.providers]
            # a GPU does not drift like a shared host: the start-of-run roofs serve every point
            probe = None if dev == "cuda" else CpuRoofProbe(roof_scale * POINT_ROOF_SCALE, dtype)
            point_roofs = _time_row(row, wl, timer, probe)
            point_meas = meas if point_roofs is None else (point_roofs["mem_gbps"] * 1e9,
                                                           point_roofs["matmul_tflops"] * 1e12)
            del probe
            for p in row:
                p.pop("_run", None)
                p.update(tokens=T, experts_touched=touched, experts_expected=expected,
                         rows_per_expert=T * s.top_k / s.experts, point_roofs=point_roofs)
                if p["provider"] == "dense-equiv":  # one expert's weights, every row: its own bytes, the same FLOPs
                    nb, fl = layer_cost(T, s.top_k, s.hidden, s.ffn, 1, elem, False)
                else:
                    nb, fl = nbytes, flops
                p.update(bytes=nb, flops=fl)
                if p["status"] == "ok":
                    t = p["time_ms"]
                    p["gbps"] = _derive(t, lambda ms: nb / (ms / 1e3) / 1e9, "GB/s")
                    p["tflops"] = _derive(t, lambda ms: fl / (ms / 1e3) / 1e12, "TFLOP/s")
                    p["pct_roof_measured"] = _pct(_floor_s(nb, fl, *point_meas), t["median"])
                    p["pct_roof_start"] = _pct(_floor_s(nb, fl, *meas), t["median"])
                    p["pct_roof_catalog"] = _pct(_floor_s(nb, fl, *cat), t["median"])
                    if point_roofs and point_roofs.get("fma_peak_tflops"):  # CPU: the stricter compute ceiling
                        peak = max(point_roofs["matmul_tflops"], point_roofs["fma_peak_tflops"]) * 1e12
                        p["pct_roof_fma_peak"] = _pct(_floor_s(nb, fl, point_meas[0], peak), t["median"])
                    p["time_us"] = {"median": t["median"] * 1e3, "p20": t["p20"] * 1e3, "p80": t["p80"] * 1e3,
                                    "n": t["n"], "basis": t["basis"], "unit": "us"}
                console_err(f"  T={T:<5} {p['provider']:<21} {_brief(p)}")
            for p in row:
                p["vs"] = {o["provider"]: o["time_ms"]["median"] / p["time_ms"]["median"] for o in row
                           if o is not p and o["status"] == "ok" and p["status"] == "ok"}
            points.extend(row)
            del ref
            if dev == "cuda":
                torch.cuda.empty_cache()
    except BaseException as exc:  # save the points measured, whatever stopped the run
        if partial_path is not None:
            doc["wall_s"] = time.time() - started
            save_stopped(exc, doc, partial_path)  # raises the one-line error of an interrupt
        raise
    doc.update(complete=True, wall_s=time.time() - started)
    return doc


def _derive(t: dict[str, Any], fn: Callable[[float], float], unit: str) -> dict[str, Any]:
    d = stat([fn(ms) for ms in t["samples"]], t["basis"], unit)
    d.pop("samples")
    return d


def _brief(p: dict[str, Any]) -> str:
    if p["status"] != "ok":
        return f"{p['status']}: {p['reason']}"
    return (f"{p['time_ms']['median'] * 1e3:10.1f} µs  {p['gbps']['median']:8.1f} GB/s  "
            f"{p['tflops']['median']:7.3f} TFLOP/s  {p['pct_roof_measured']:5.1f}% of roof")


def _prepare(prov: str, layer: Layer, x_TD, w_TK, ids_TK, ref, dtype) -> dict[str, Any]:
    """Build the provider's runner and check it against the reference; `_run` is set when it may be timed."""
    p: dict[str, Any] = {"provider": prov, "status": "ok", "reason": None, "check": None, "cuda_graph": False}
    try:
        run = make_runner(prov, layer, x_TD, w_TK, ids_TK)
        if prov != "dense-equiv":  # a different function: nothing to check against
            err = _rel_err(run(), ref)
            p["check"] = {"rel_err": err, "tol": CHECK_TOL[dtype], "passed": err <= CHECK_TOL[dtype]}
            if not err <= CHECK_TOL[dtype]:  # NaN fails too
                p.update(status="failed", reason=f"relative error {err:.2e} vs fused_moe_ref exceeds {CHECK_TOL[dtype]:.0e}")
                return p
        p["_run"] = run
    except Unsupported as exc:
        p.update(status="skipped", reason=str(exc))
    except torch.cuda.OutOfMemoryError as exc:
        p.update(status="skipped", reason=f"out of memory: {str(exc).splitlines()[0]}")
        torch.cuda.empty_cache()
    except Exception as exc:  # noqa: BLE001 - one provider's error is its row's verdict, not the run's end
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        p.update(status="failed", reason=f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return p


def _time_row(row: list[dict[str, Any]], wl: KernelWorkload, timer: Optional[CudaTimer],
              probe: Optional[CpuRoofProbe] = None) -> Optional[dict[str, Any]]:
    """Time the checked providers of one token count. On CPU the providers take turns, one repeat each, and
    a round of `probe` joins every turn, so that drift in the host's load (other processes, frequency, a
    neighbour's memory traffic) falls on all of them and on the roofs alike; returns the probe's roofs. The
    turn order rotates by one each round, so whatever one call leaves behind (threads still spinning, caches)
    falls on every provider in turn, not always on the one after the probe."""
    live = [p for p in row if "_run" in p]
    if timer is not None:
        for p in live:
            try:
                samples, p["cuda_graph"] = time_cuda(timer, p["_run"], wl.timing.warmup, wl.timing.repeats,
                                                     p["provider"] in GRAPHABLE)
                p["time_ms"] = stat(samples, "measured", "ms")
            except torch.cuda.OutOfMemoryError as exc:
                p.update(status="skipped", reason=f"out of memory: {str(exc).splitlines()[0]}")
                torch.cuda.empty_cache()
        return None
    samples: dict[int, list[float]] = {id(p): [] for p in live}
    rounds = []
    for _ in range(wl.timing.warmup):
        for p in live:
            p["_run"]()
    if probe is not None:
        probe.sample()  # warm-up after the providers' own: BLAS and FMA threads started, numpy's first call
    for r in range(wl.timing.repeats):
        k = r % max(len(live), 1)
        for p in live[k:] + live[:k]:
            samples[id(p)].extend(time_cpu(p["_run"], 0, 1))
        if probe is not None:
            rounds.append(probe.sample())
    for p in live:
        p["time_ms"] = stat(samples[id(p)], "measured", "ms")
    return probe.roofs(rounds) if rounds else None


def render_table(result: dict[str, Any]):
    """A rich Table of the points: one row per token count × provider."""
    from rich.table import Table
    from rich.text import Text

    wl, hw = result["workload"], result["hardware"]
    s = wl["shape"]
    roofs = hw["measured_roofs"]
    title = (f"{wl['op']} · {wl['name']} (E={s['experts']} K={s['top_k']} D={s['hidden']} F={s['ffn']} "
             f"{s['activation']}) · {hw['label']} {hw.get('device_name') or ''} · {hw['dtype']}")
    within = any(p.get("point_roofs") for p in result["points"])
    caption = (f"roofs measured {'at the start of ' if within else ''}this run: {roofs['mem_gbps']:.1f} GB/s "
               f"({roofs['mem_probe']}), {roofs['matmul_tflops']:.3f} TFLOP/s ({roofs['matmul_probe']})")
    if within:
        caption += ("; '% roof' is against the roofs measured within each T (shown after T: medians of shorter "
                    "probes, one round between each round of the providers' repeats), '% start roof' against the "
                    "start ones")
    peak_col = any("pct_roof_fma_peak" in p for p in result["points"])
    if peak_col:
        caption += ("; '% FMA-peak roof': the same, with the compute ceiling at the register-FMA peak measured in the "
                    "same rounds (stricter than the matmul: BLAS reaches 80-90% of it)")
    if hw.get("catalog_hbm_tbps"):
        peak = hw.get("catalog_peak_tflops")
        caption += (f"; catalog: {hw['catalog_hbm_tbps'] * 1e3:.0f} GB/s, "
                    + (f"{peak:.0f} TFLOP/s" if peak else f"no {hw.get('dtype', 'this dtype')} peak"))
    caption += (". bytes = weights of the experts the routing touched; vs = other's median / this median (>1: this "
                "is faster); ref = torch-ref, grouped = torch-grouped, hf-* = transformers-*, dense = dense-equiv.")
    t = Table(title=title, caption=caption)
    for c in ("T", "provider", "experts hit", "median µs", "p20–p80 µs", "n", "GB/s", "TFLOP/s", "% roof",
              *(["% start roof"] if within else []), "% FMA-peak roof" if peak_col else "% catalog", "vs others"):
        t.add_column(c, justify="left" if c in ("provider", "vs others") else "right")
    providers = wl["providers"]
    last_T = None
    for p in result["points"]:
        T = p["tokens"]
        t_col = str(T) if T != last_T else ""
        if t_col and p.get("point_roofs"):
            t_col += f" ({p['point_roofs']['mem_gbps']:.1f} GB/s, {p['point_roofs']['matmul_tflops']:.3f} TF/s)"
        if last_T is not None and T != last_T:
            t.add_section()
        last_T = T
        if p["status"] != "ok":
            t.add_row(t_col, p["provider"], f"{p['experts_touched']}", p["status"], *[""] * (7 if within else 6),
                      Text(p["reason"] or "", style="dim"))
            continue
        tu = p["time_us"]
        vs = " ".join(f"{SHORT.get(o, o)} {p['vs'][o]:.2f}×" for o in providers if o in p["vs"])
        cat = p.get("pct_roof_fma_peak") if peak_col else p["pct_roof_catalog"]
        t.add_row(t_col, p["provider"] + (" (graph)" if p["cuda_graph"] else ""),
                  f"{p['experts_touched']}/{p['experts_expected']:.1f}", f"{tu['median']:.1f}",
                  f"{tu['p20']:.1f}–{tu['p80']:.1f}", str(tu["n"]), f"{p['gbps']['median']:.1f}",
                  f"{p['tflops']['median']:.3f}", f"{p['pct_roof_measured']:.0f}%",
                  *([f"{p['pct_roof_start']:.0f}%"] if within else []),
                  "—" if cat is None or math.isnan(cat) else f"{cat:.0f}%", vs)
    return t
