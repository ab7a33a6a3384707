"""What a reader must know before trusting a run's numbers, as one line each: figures extrapolated from some of a
model's layers, efficiency ratios above a roof measured in the same run, and a machine other processes kept busy.
The run table, `compare` and the HTML report print these lines under their tables."""

from __future__ import annotations

from typing import Any

from moebench import metrics as mt
from moebench.machine import contended


def extrapolated(doc: dict[str, Any]) -> list[str]:
    """One line per model that ran only N of its L layers: its figures are an extrapolation on this machine, and
    `moebench project` prices the model on the hardware it is deployed on."""
    lines, seen = [], set()
    for r in doc.get("records") or []:
        if r.get("basis") != "extrapolated" or r.get("model") in seen:
            continue
        seen.add(r.get("model"))
        hint = (f"moebench project --model {r['model']} --prompt {r.get('prompt_tokens')} "
                f"--output {r.get('output_tokens')} --serving static")
        lines.append(f"{r['model']} ran {r.get('layers_run')} of its {r.get('layers_total')} layers here (the "
                     f"machine does not hold the whole model, or the workload asked for fewer): its figures "
                     f"extrapolate those layers to full depth on this machine; for the hardware the model is "
                     f"deployed on, `{hint}`")
    return lines


def above_roof(doc: dict[str, Any]) -> list[str]:
    """One line per record whose efficiency exceeds a roof measured in the same run (MFU 121 % of the measured
    roof): the run cannot beat its machine, so the roof measurement undercounts and the ratio is no ceiling."""
    lines = []
    for r in doc.get("records") or []:
        over = []
        for m in mt.METRICS:
            v = mt.at(r.get("metrics") or {}, m.path) if m.roof else None
            if isinstance(v, (int, float)) and v > 1.0:
                over.append(f"{m.label} {v:.0%}")
        if over:
            lines.append(f"{r.get('model')} batch {r.get('batch_size')}: {', '.join(over)} of the roof measured "
                         "in this run — above 100 %, so that roof undercounts this machine and is no ceiling here "
                         "(docs/measure.md)")
    return lines


def interpreted(doc: dict[str, Any]) -> list[str]:
    """One line when the kernels ran in Triton's interpreter: the times then measure the interpreter."""
    kernels = str((doc.get("hardware") or {}).get("kernels") or "")
    if "(interpreted)" not in kernels:
        return []
    return [f"kernels {kernels}: Triton's interpreter (TRITON_INTERPRET=1) ran them, correct but not fast; these "
            "times measure the interpreter, not the kernels or this hardware"]


def busy(doc: dict[str, Any]) -> list[str]:
    """One line when a record of the run was timed on a contended machine (docs/measure.md: Contention)."""
    why = contended(doc)
    return [f"timed on a contended machine ({why}): other processes added to its times"] if why else []


def caveats(doc: dict[str, Any]) -> list[str]:
    """Every caveat of a run (the run table prints them all under it; the run also logs `busy` as it measures)."""
    return extrapolated(doc) + interpreted(doc) + above_roof(doc) + busy(doc)
