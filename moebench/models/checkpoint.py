"""Load a local Hugging Face checkpoint directory (config.json + *.safetensors, sharded or not) into our modules.

The family comes from config.json's model_type (each spec lists its `hf_model_types`). Every family shares
Llama's tensor names except for what its spec's `HFNames` says. Experts are read in any of the layouts the
checkpoints use — per-expert tensors as on the Hub (`experts.{j}.w1` / `gate_proj`…), transformers-5 fused
`experts.gate_up_proj` / `down_proj`, gpt-oss's transposed, interleaved fused tensors, MXFP4 blocks — and
written into our stacked `w13_E2FD` (gate rows then up rows) and `w2_EDF`, one expert at a time so a
real-width layer never needs a second full copy. `layers=N` reads only the first N layers.

Anticipated problems (no config, unknown model_type, a missing tensor, a shape mismatch, an unsupported dtype)
raise BadInput with one line naming the file or tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from moebench.errors import BadInput
from moebench.models.quant import fp8_block_dequant, mxfp4_dequant

PLAIN_DTYPES = {"F32", "BF16", "F16"}
SUPPORTED = "F32, BF16, F16, F8_E4M3 with weight_scale_inv block scales, MXFP4 expert blocks"


class _Reader:
    """Tensor lookup over one directory's safetensors files, with dtype checks and dequantization."""

    def __init__(self, root: Path, raw_cfg: dict[str, Any]):
        from safetensors import safe_open

        self.root, self._safe_open, self._files = root, safe_open, {}
        index = root / "model.safetensors.index.json"
        self.where: dict[str, Path] = {}
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BadInput(f"{index}: not a safetensors index ({exc.__class__.__name__}: {exc})") from None
            self.where = {name: root / fname for name, fname in weight_map.items()}
        else:
            files = sorted(root.glob("*.safetensors"))
            if not files:
                raise BadInput(f"{root}: no *.safetensors files (only safetensors checkpoints are read)")
            for f in files:
                for name in self._open(f).keys():
                    self.where[name] = f
        q = raw_cfg.get("quantization_config") or {}
        self.fp8_block = tuple(q.get("weight_block_size") or (128, 128))

    def _open(self, path: Path):
        if path not in self._files:
            if not path.is_file():
                raise BadInput(f"{path}: listed in model.safetensors.index.json but missing")
            try:
                self._files[path] = self._safe_open(str(path), framework="pt", device="cpu")
            except Exception as exc:  # safetensors raises its own error types for corrupt headers
                raise BadInput(f"{path}: unreadable safetensors file ({exc})") from None
        return self._files[path]

    def has(self, name: str) -> bool:
        return name in self.where

    def _slice(self, name: str):
        return self._open(self.where[name]).get_slice(name)

    def shape(self, name: str) -> list[int]:
        return list(self._slice(name).get_shape())

    def raw(self, name: str, index: Optional[int] = None) -> torch.Tensor:
        """The stored tensor (or its `index`-th entry along dim 0), without dtype checks."""
        sl = self._slice(name)
        return sl[index] if index is not None else sl[:]

    def get(self, name: str, dtype: torch.dtype, index: Optional[int] = None) -> torch.Tensor:
        """A floating-point tensor in `dtype`; block-FP8 weights are dequantized with their scales."""
        if not self.has(name):
            raise BadInput(f"{self.root}: checkpoint has no tensor {name!r}")
        dt = self._slice(name).get_dtype()
        if dt in PLAIN_DTYPES:
            return self.raw(name, index).to(dtype)
        scale = name.removesuffix("weight") + "weight_scale_inv"
        if dt == "F8_E4M3" and name.endswith("weight") and self.has(scale):
            return fp8_block_dequant(self.raw(name, index), self.raw(scale, index), self.fp8_block, dtype)
        raise BadInput(f"{self.root}: tensor {name!r} has unsupported dtype {dt} (supported: {SUPPORTED})")


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(x)) for x in shape) + "]"


class _Writer:
    def __init__(self, reader: _Reader, family: str):
        self.r, self.family = reader, family

    def put(self, dst: torch.Tensor, src: torch.Tensor, hf_name: str) -> None:
        if tuple(src.shape) != tuple(dst.shape):
            raise BadInput(
                f"{self.r.root}: tensor {hf_name!r} has shape {_fmt(src.shape)} but the {self.family} config "
                f"expects {_fmt(dst.shape)}"
            )
        dst.copy_(src)

    def load(self, dst: torch.Tensor, hf_name: str, index: Optional[int] = None) -> None:
        self.put(dst, self.r.get(hf_name, dst.dtype, index), hf_name)


# our module names -> HF's, inside a layer (the MoE block's own name comes from the family's HFNames)
_ATTN = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj", "q_norm": "q_norm", "k_norm": "k_norm",
         "wq_a": "q_a_proj", "q_a_norm": "q_a_layernorm", "wq_b": "q_b_proj", "wkv_a": "kv_a_proj_with_mqa",
         "kv_a_norm": "kv_a_layernorm", "wkv_b": "kv_b_proj"}
_MLP = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj", "shared": "shared_experts"}
_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn": "self_attn"}
_TOP = {"embed": "model.embed_tokens", "norm": "model.norm", "lm_head": "lm_head"}
_EXPERT_STACKS = ("w13_E2FD", "w2_EDF", "b13_E2F", "b2_ED")


def _hf_name(ours: str, moe_prefix: Optional[str], router: str) -> str:
    """`layers.3.attn.wq.weight` -> `model.layers.3.self_attn.q_proj.weight` (non-expert tensors)."""
    parts = ours.split(".")
    if parts[0] != "layers":
        return ".".join([_TOP[parts[0]], *parts[1:]])
    out = ["model", "layers", parts[1]]
    section, rest = parts[2], parts[3:]
    if section == "ffn":
        out.append(moe_prefix or "mlp")
        table = {**_MLP, "router": router}
    else:
        out.append(_LAYER[section])
        table = _ATTN if section == "attn" else {}
    return ".".join(out + [table.get(p, p) for p in rest])


def _deinterleave_rows(w: torch.Tensor, head_dim: int, lo: int, hi: int) -> torch.Tensor:
    """Within each head of `head_dim` rows, reorder rows [lo, hi) from (x0, x1), (x2, x3)… to x0, x2, …, x1, x3, …

    This turns DeepSeek's interleaved rope layout into the half-rotation one; applied to q and k alike it
    leaves every score unchanged.
    """
    perm = torch.arange(head_dim)
    perm[lo:hi] = torch.cat([torch.arange(lo, hi, 2), torch.arange(lo + 1, hi, 2)])
    lead = w.shape[0] // head_dim
    return w.reshape(lead, head_dim, *w.shape[1:])[:, perm].reshape(w.shape)


def _load_experts(wr: _Writer, moe, prefix: str, names) -> None:
    """Fill `moe.w13_E2FD` / `w2_EDF` (+ biases) from whichever expert layout the checkpoint has."""
    r, e, f = wr.r, moe.w13_E2FD.shape[0], moe.w2_EDF.shape[2]
    per = f"{prefix}.experts.{{j}}.{{w}}.weight"
    fused = f"{prefix}.experts.gate_up_proj"
    if names.experts and r.has(per.format(j=0, w=names.experts[0])):
        gate, up, down = names.experts
        for j in range(e):
            wr.load(moe.w13_E2FD[j, :f], per.format(j=j, w=gate))
            wr.load(moe.w13_E2FD[j, f:], per.format(j=j, w=up))
            wr.load(moe.w2_EDF[j], per.format(j=j, w=down))
        return
    if names.fused == "rows" and r.has(fused):
        for j in range(e):
            wr.load(moe.w13_E2FD[j], fused, j)
            wr.load(moe.w2_EDF[j], f"{prefix}.experts.down_proj", j)
        return
    if names.fused == "gpt_oss" and (r.has(fused) or r.has(fused + "_blocks")):
        _load_gpt_oss_experts(wr, moe, prefix)
        return
    first = per.format(j=0, w=names.experts[0]) if names.experts else fused
    raise BadInput(f"{r.root}: checkpoint has no tensor {first!r}")


def _load_gpt_oss_experts(wr: _Writer, moe, prefix: str) -> None:
    # gpt-oss keeps gate and up interleaved along 2F (even: gate, odd: up); ours stacks gate rows then up rows.
    r, dt = wr.r, moe.w13_E2FD.dtype
    gu, down = f"{prefix}.experts.gate_up_proj", f"{prefix}.experts.down_proj"

    def deinterleave(x_2FX: torch.Tensor) -> torch.Tensor:
        return torch.cat([x_2FX[0::2], x_2FX[1::2]], dim=0)

    for j in range(moe.w13_E2FD.shape[0]):
        if r.has(gu + "_blocks"):  # MXFP4 stores [E, out, in/32, 16]: already out-major
            w13 = mxfp4_dequant(r.raw(gu + "_blocks", j), r.raw(gu + "_scales", j), dt)
            w2 = mxfp4_dequant(r.raw(down + "_blocks", j), r.raw(down + "_scales", j), dt)
        else:  # bf16 / fp32 stores x @ W: [E, in, out]
            w13, w2 = r.get(gu, dt, j).t(), r.get(down, dt, j).t()
        wr.put(moe.w13_E2FD[j], deinterleave(w13), gu)
        wr.put(moe.w2_EDF[j], w2, down)
        wr.put(moe.b13_E2F[j], deinterleave(r.get(gu + "_bias", dt, j)), gu + "_bias")
        wr.load(moe.b2_ED[j], down + "_bias", j)


def read_config(root: Path) -> dict[str, Any]:
    path = root / "config.json"
    if not path.is_file():
        raise BadInput(f"{root}: not a Hugging Face checkpoint directory (no config.json)")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: broken JSON ({exc})") from None
    if not isinstance(d, dict) or "model_type" not in d:
        raise BadInput(f"{path}: no model_type")
    return d


def find_spec(model_type: str, where: str):
    """The registered family whose spec lists this config.json model_type."""
    from moebench.models import registry

    reg = registry()
    specs = [reg.load(name) for name in reg.names()]
    for spec in specs:
        if model_type in spec.hf_model_types:
            return spec
    known = sorted(t for s in specs for t in s.hf_model_types)
    raise BadInput(f"{where}: model_type {model_type!r} is not supported (supported: {', '.join(known)})")


def read_arch(path: str | Path):
    """(spec, full ArchConfig) of the checkpoint in `path`, from its config.json alone (no tensors read)."""
    root = Path(path)
    if not root.is_dir():
        raise BadInput(f"weights {root}: no such checkpoint directory (a relative path is relative to the workload file)")
    raw = read_config(root)
    spec = find_spec(raw["model_type"], str(root / "config.json"))
    try:
        return spec, spec.arch(raw)
    except (KeyError, ValueError, TypeError) as exc:
        raise BadInput(f"{root / 'config.json'}: {exc.__class__.__name__}: {exc}") from None


# The widths that make a checkpoint the named catalog flavor (a fine-tune of it keeps every one).
_IDENTITY = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
             "vocab_size", "n_routed_experts", "top_k", "moe_intermediate_size", "n_shared_experts")


def check_checkpoint_entry(name: str, path: str | Path):
    """(spec, full cfg) for a workload entry `name` with `weights: path`, or BadInput saying why they disagree.

    The family must be the checkpoint's. A catalog flavor must match the checkpoint's architecture (the record
    takes that model's label and intelligence score); any other flavor is the user's label for this checkpoint
    (`mixtral:my-finetune`), with no catalog score."""
    from moebench.models import registry

    spec, cfg = read_arch(path)
    family, _, flavor = name.partition(":")
    if family != spec.family:
        raise BadInput(f"weights {path} hold a {cfg.model_type} checkpoint (family {spec.family}), not {family}; "
                       f"name it {spec.family}:<flavor>")
    named = registry().load(family).flavors.get(flavor)
    if named is not None:
        diff = [f"{k} {getattr(cfg, k)} vs {getattr(named, k)}" for k in _IDENTITY if getattr(cfg, k) != getattr(named, k)]
        if diff:
            raise BadInput(f"weights {path} are not {name}'s architecture ({', '.join(diff[:3])}); "
                           f"give the entry a flavor of its own, e.g. {family}:my-checkpoint")
    return spec, cfg


@torch.no_grad()
def load_checkpoint(path: str | Path, *, layers: int | None = None, device: str = "cpu", dtype=torch.float32):
    """The model stored in `path` (its first `layers` layers), on `device` in `dtype`, ready for eval."""
    from moebench.models import materialize
    from moebench.models.common.moe import MoE

    root = Path(path)
    spec, cfg = read_arch(root)
    cfg = cfg.with_layers(layers)
    raw = cfg.raw
    reader = _Reader(root, raw)
    model = materialize(spec, cfg, device=device, dtype=dtype)
    wr, names = _Writer(reader, spec.family), spec.hf_names
    interleaved = cfg.attention == "mla" and raw.get("rope_interleave", names.rope_interleave_default)

    moe_prefix: dict[int, str] = {}
    for i, blk in enumerate(model.layers):
        if isinstance(blk.ffn, MoE):
            base = f"model.layers.{i}"
            found = [p for p in names.moe if reader.has(f"{base}.{p}.{names.router}.weight")]
            moe_prefix[i] = found[0] if found else names.moe[0]
            _load_experts(wr, blk.ffn, f"{base}.{moe_prefix[i]}", names)

    state = dict(model.named_parameters())
    state.update((n, b) for n, b in model.named_buffers() if n.split(".")[-1] in _persistent_buffers(model, n))
    for ours, dst in state.items():
        if ours.split(".")[-1] in _EXPERT_STACKS or (ours == "lm_head.weight" and cfg.tie_word_embeddings):
            continue
        layer = int(ours.split(".")[1]) if ours.startswith("layers.") else -1
        hf = _hf_name(ours, moe_prefix.get(layer), names.router)
        src = reader.get(hf, dst.dtype)
        if interleaved and ours.endswith(("attn.wq_b.weight", "attn.wq.weight")):
            qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
            src = _deinterleave_rows(src, qk, cfg.qk_nope_head_dim, qk)
        elif interleaved and ours.endswith(("attn.wkv_a.weight", "attn.wkv_a.bias")):
            c = cfg.kv_lora_rank + cfg.qk_rope_head_dim
            src = _deinterleave_rows(src, c, cfg.kv_lora_rank, c)
        wr.put(dst, src, hf)
    return model.eval()


def _persistent_buffers(model, name: str) -> set[str]:
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return set(owner._buffers) - owner._non_persistent_buffers_set
