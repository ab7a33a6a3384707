"""Launch configs for the fused-MoE GEMMs: tuned JSON files, nearest token bucket, sane defaults.

Files live in `configs/` beside this module (or in the folder named by `MOEBENCH_KERNEL_CONFIGS`, searched
first) and are named as vLLM names its tuned files:

    E={experts},N={ffn},device_name={torch.cuda.get_device_name() with spaces -> _},dtype={bf16|fp16|fp32}.json

The document maps a token count T (as a string) to the configs of the two GEMMs:

    {"64": {"gate_up": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
                        "num_warps": 4, "num_stages": 4, "USE_TMA": 0},
            "down":    {...same keys...}},
     ...}

A vLLM file (one flat config per bucket, used for both GEMMs; its "triton_version" entry is ignored) is accepted
as is, so a vLLM tuning run can be dropped in: vLLM names its 16-bit files without the `,dtype=` part, and for
bf16/fp16 that name is looked for after ours. `USE_TMA` (0/1, optional, 0 when absent) picks the tensor-descriptor
path of fused_moe.py.
Lookup takes the bucket nearest to T (log scale) and falls back to `default_configs`.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from moebench_kernels._jit import interpreting

KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")
# Keys a file may leave out (vLLM's files and ours from before they existed), with the value they then take.
OPTIONAL_KEYS = {"USE_TMA": 0}
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}

GemmConfig = dict[str, int]


def dtype_name(dtype: Any) -> str:
    s = str(dtype).removeprefix("torch.")
    return DTYPE_NAMES.get(s, s)


def device_label(device_name: str) -> str:
    return device_name.replace(" ", "_")


def config_file_name(experts: int, ffn: int, device_name: str, dtype: Any) -> str:
    return f"E={experts},N={ffn},device_name={device_label(device_name)},dtype={dtype_name(dtype)}.json"


def _check(cfg: Any, where: str) -> GemmConfig:
    if not isinstance(cfg, dict) or any(k not in cfg for k in KEYS):
        raise ValueError(f"{where}: a config needs the keys {', '.join(KEYS)}")
    return {k: int(cfg[k]) for k in KEYS} | {k: int(cfg.get(k, v)) for k, v in OPTIONAL_KEYS.items()}


def parse_config_doc(doc: Any, where: str = "<config>") -> dict[int, dict[str, GemmConfig]]:
    """Validate a config document (ours or vLLM's) into {T: {"gate_up": cfg, "down": cfg}}."""
    if not isinstance(doc, dict) or not doc:
        raise ValueError(f"{where}: expected a non-empty mapping of token counts to configs")
    out: dict[int, dict[str, GemmConfig]] = {}
    for key, val in doc.items():
        try:
            t = int(key)
        except ValueError:
            if not isinstance(val, dict):  # metadata beside the buckets, e.g. vLLM's "triton_version"
                continue
            raise ValueError(f"{where}: bucket {key!r} is not a token count") from None
        if isinstance(val, dict) and "gate_up" in val:
            out[t] = {"gate_up": _check(val["gate_up"], f"{where}[{key}].gate_up"),
                      "down": _check(val.get("down", val["gate_up"]), f"{where}[{key}].down")}
        else:  # vLLM: one config for both GEMMs
            c = _check(val, f"{where}[{key}]")
            out[t] = {"gate_up": c, "down": dict(c)}
    if not out:
        raise ValueError(f"{where}: no token-count buckets")
    return out


def write_config_doc(path: Path, table: dict[str, Any]) -> None:
    """Write tuned buckets into `path`, keeping the buckets it already holds that this table does not retune
    (a run over a few buckets must not drop the others), atomically (a reader never sees half a file)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    merged = {k: v for k, v in old.items() if k not in table} | table
    doc = dict(sorted(merged.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _search_dirs() -> list[Path]:
    env = os.environ.get("MOEBENCH_KERNEL_CONFIGS")
    return ([Path(env)] if env else []) + [CONFIG_DIR]


@lru_cache(maxsize=64)
def load_configs(experts: int, ffn: int, device_name: str, dtype: str) -> Optional[dict[int, dict[str, GemmConfig]]]:
    """The tuned table for this shape and device, or None when no file exists."""
    names = [config_file_name(experts, ffn, device_name, dtype)]
    if dtype in ("bf16", "fp16"):
        names.append(f"E={experts},N={ffn},device_name={device_label(device_name)}.json")  # vLLM's 16-bit name
    for d in _search_dirs():
        for name in names:
            p = d / name
            if p.is_file():
                return parse_config_doc(json.loads(p.read_text()), str(p))
    return None


def nearest_bucket(buckets: list[int], tokens: int) -> int:
    """The bucket closest to `tokens` on a log scale (ties go to the larger bucket)."""
    lt = math.log(max(tokens, 1))
    return min(buckets, key=lambda b: (abs(math.log(max(b, 1)) - lt), -b))


def default_configs(tokens: int, top_k: int, experts: int, ffn: int, hidden: int, dtype: Any) -> dict[str, GemmConfig]:
    """Untuned but reasonable: small M tiles and deep K tiles while weight-bound, big square tiles when not."""
    rows_per_expert = tokens * top_k / max(experts, 1)
    small = dtype_name(dtype) != "fp32"
    if rows_per_expert <= 16:
        c = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128 if small else 64, "GROUP_SIZE_M": 1,
             "num_warps": 4, "num_stages": 4 if small else 2, "USE_TMA": 0}
        return {"gate_up": c, "down": dict(c)}
    if rows_per_expert <= 128:
        c = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64 if small else 32, "GROUP_SIZE_M": 8,
             "num_warps": 4, "num_stages": 4 if small else 2, "USE_TMA": 0}
        return {"gate_up": c, "down": dict(c)}
    c = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 64 if small else 32, "GROUP_SIZE_M": 8,
         "num_warps": 8, "num_stages": 3 if small else 2, "USE_TMA": 0}
    return {"gate_up": c, "down": dict(c)}


def interpreter_configs(ffn: int, hidden: int) -> dict[str, GemmConfig]:
    """Triton's interpreter pays per program and per op, not per element: few, large tiles."""
    c = {"BLOCK_SIZE_M": 16, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 1, "USE_TMA": 0}
    return {"gate_up": c | {"BLOCK_SIZE_N": min(256, max(16, _pow2(ffn))), "BLOCK_SIZE_K": min(256, max(16, _pow2(hidden)))},
            "down": c | {"BLOCK_SIZE_N": min(256, max(16, _pow2(hidden))), "BLOCK_SIZE_K": min(256, max(16, _pow2(ffn)))}}


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def get_configs(tokens: int, top_k: int, experts: int, ffn: int, hidden: int, dtype: Any,
                device_name: Optional[str]) -> dict[str, GemmConfig]:
    """Tuned configs for the nearest token bucket when a file exists for this device, else the defaults
    (or, under TRITON_INTERPRET=1 without a GPU, the interpreter's)."""
    if device_name:
        table = load_configs(experts, ffn, device_name, dtype_name(dtype))
        if table:
            return table[nearest_bucket(list(table), tokens)]
    elif interpreting():
        return interpreter_configs(ffn, hidden)
    return default_configs(tokens, top_k, experts, ffn, hidden, dtype)
