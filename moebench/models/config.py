"""One architecture config for every family, read from Hugging Face `config.json` keys: `hf_common` reads the
keys every family shares, each family's `parse_hf` (in its own module) the rest, and `from_hf` picks the parser
through the model registry by `model_type`.

The cost model (params, FLOPs, bytes) needs only this object, never the module. Counting conventions follow
shared/reference/catalog.yaml `param_count_method`: totals include input embedding and LM head; `active`
counts the top-k routed (+ shared) experts, and for gpt-oss excludes the input embedding (OpenAI's convention).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from moebench import arith


@dataclass(frozen=True)
class ArchConfig:
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int  # dense FFN width
    vocab_size: int
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict[str, Any]] = None
    max_position_embeddings: int = 8192
    # attention variants
    attention: str = "gqa"  # gqa | mla
    qk_norm: bool = False
    attention_bias: bool = False
    attention_sinks: bool = False
    sliding_window: Optional[int] = None
    layer_types: Optional[tuple[str, ...]] = None  # per layer: sliding_attention | full_attention
    q_lora_rank: Optional[int] = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE
    n_routed_experts: int = 0
    top_k: int = 0
    moe_intermediate_size: int = 0
    n_shared_experts: int = 0
    first_k_dense: int = 0  # first k layers use the dense FFN
    router: str = "softmax"  # softmax | topk_softmax (gpt-oss) | sigmoid_grouped (deepseek)
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    expert_bias: bool = False  # gpt-oss: biases on router and experts
    activation: str = "silu"  # silu | swiglu_oai
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702
    # gpt-oss scales by the norm weight in fp32 before casting back (Llama casts first); equal in fp32
    norm_scale_fp32: bool = False
    # bookkeeping
    full_num_layers: Optional[int] = None  # set when running N of L layers
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # A config.json can hold anything JSON can: catch a string or a null width here, with its name, instead
        # of as a TypeError deep inside module construction.
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "int" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{f.name} must be a whole number >= 0, got {v!r}")
            if f.type == "int" and f.default is dataclasses.MISSING and v == 0:
                raise ValueError(f"{f.name} must be at least 1, got 0")
            if f.type == "float" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"{f.name} must be a number, got {v!r}")

    # ---- structure -------------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    @property
    def layers_total(self) -> int:
        return self.full_num_layers or self.num_hidden_layers

    def is_moe_layer(self, i: int) -> bool:
        return self.is_moe and i >= self.first_k_dense

    def is_sliding_layer(self, i: int) -> bool:
        return bool(self.layer_types and self.layer_types[i] == "sliding_attention" and self.sliding_window)

    def with_layers(self, n: int | None) -> "ArchConfig":
        """The first n layers at real widths (layer types follow the real model's pattern)."""
        if n is None or n >= self.num_hidden_layers:
            return self
        return dataclasses.replace(self, num_hidden_layers=n, full_num_layers=self.layers_total)

    def full(self) -> "ArchConfig":
        if self.full_num_layers is None:
            return self
        return dataclasses.replace(self, num_hidden_layers=self.full_num_layers, full_num_layers=None)

    def _layer_types(self, n: int) -> list[str]:
        if self.layer_types:
            return list(self.layer_types[:n])
        return ["full_attention"] * n

    # ---- parameters --------------------------------------------------------------------------------------
    def attention_params(self) -> int:
        """The attention projections plus what they carry besides matmul weights: MLA's latent norms, biases,
        QK-norm weights and attention sinks."""
        p = self.attention_matmul_params()
        if self.attention == "mla":
            return p + (self.q_lora_rank or 0) + self.kv_lora_rank
        nh, nkv, hd = self.num_attention_heads, self.num_key_value_heads, self.head_dim
        if self.attention_bias:
            p += nh * hd + 2 * nkv * hd + self.hidden_size
        if self.qk_norm:
            p += 2 * hd
        if self.attention_sinks:
            p += nh
        return p

    def expert_params(self) -> int:
        """One routed expert (gate, up, down; + biases for gpt-oss)."""
        return arith.expert_params(self.hidden_size, self.moe_intermediate_size, self.expert_bias)

    def shared_expert_params(self) -> int:
        """All shared experts of one MoE layer (plain GLUs, no biases)."""
        return self.n_shared_experts * arith.glu_params(self.hidden_size, self.moe_intermediate_size)

    def router_params(self) -> int:
        e = self.n_routed_experts
        bias = e if (self.expert_bias or self.router == "sigmoid_grouped") else 0
        return self.hidden_size * e + bias

    def ffn_params(self, layer: int, active: bool) -> int:
        """FFN weights of one layer: the dense GLU, or router + routed (all, or the top-k when `active`) + shared."""
        if not self.is_moe_layer(layer):
            return arith.glu_params(self.hidden_size, self.intermediate_size)
        routed = (self.top_k if active else self.n_routed_experts) * self.expert_params()
        return routed + self.shared_expert_params() + self.router_params()

    def layer_params(self, layer: int, active: bool = False) -> int:
        return self.attention_params() + self.ffn_params(layer, active) + 2 * self.hidden_size

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        c = self.full()
        layers = sum(c.layer_params(i) for i in range(c.num_hidden_layers))
        return c.embedding_params() + layers + c.hidden_size + c.lm_head_params()

    def active_params(self) -> int:
        c = self.full()
        layers = sum(c.layer_params(i, active=True) for i in range(c.num_hidden_layers))
        embed = 0 if self.model_type == "gpt_oss" else c.embedding_params()
        lm_head = c.lm_head_params() or c.embedding_params()
        return embed + layers + c.hidden_size + lm_head

    # ---- cost model ------------------------------------------------------------------------------------
    def kv_elems_per_token(self, layer: int) -> int:
        """Cached elements per token in one layer (MLA caches the compressed latent plus the rope key)."""
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_key_value_heads * self.head_dim

    def attended(self, layer: int, context: int) -> int:
        return min(context, self.sliding_window) if self.is_sliding_layer(layer) else context

    def attention_flops(self, layer: int, context: int) -> int:
        """Score and value matmul FLOPs for one query token attending `context` tokens.

        MLA counts the multi-head equivalent (q·k over Dn + Dr, p·v over Dv per head), the convention of
        DeepSeek's own MFU figures; absorbed decode does 2·H·(2·R + Dr) per cached token instead, trading FLOPs
        for a cache R + Dr wide.
        """
        nh = self.num_attention_heads
        if self.attention == "mla":
            qk, v = self.qk_nope_head_dim + self.qk_rope_head_dim, self.v_head_dim
        else:
            qk = v = self.head_dim
        return 2 * nh * (qk + v) * self.attended(layer, context)

    def attention_matmul_params(self) -> int:
        """Weights of the attention projections only (no norms, biases or sinks): what matmuls multiply."""
        h = self.hidden_size
        if self.attention == "mla":
            nh, qk = self.num_attention_heads, self.qk_nope_head_dim + self.qk_rope_head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * nh * qk if self.q_lora_rank else h * nh * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv += self.kv_lora_rank * nh * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv + nh * self.v_head_dim * h
        nh, nkv, hd = self.num_attention_heads, self.num_key_value_heads, self.head_dim
        return 2 * h * nh * hd + 2 * h * nkv * hd

    def ffn_matmul_params(self, layer: int) -> int:
        """Weights one token multiplies in the FFN: dense MLP, or router + top-k routed + shared experts."""
        h = self.hidden_size
        if not self.is_moe_layer(layer):
            return arith.glu_params(h, self.intermediate_size)
        return h * self.n_routed_experts + (self.top_k + self.n_shared_experts) * arith.glu_params(h, self.moe_intermediate_size)

    def flops_per_token(self, context: int = 0, layers: int | None = None) -> int:
        """Forward FLOPs for one token at `context` tokens of attention: 2 × active matmul weights + attention.

        Counts only the top-k (+ shared) experts; norms, biases and the input embedding (a gather) cost no
        matmul FLOPs; the LM head counts.
        """
        n = self.num_hidden_layers if layers is None else layers
        f = 0
        for i in range(n):
            f += 2 * (self.attention_matmul_params() + self.ffn_matmul_params(i)) + self.attention_flops(i, context)
        return f + self.head_flops()

    def head_flops(self) -> int:
        """The LM head's FLOPs for one token."""
        return 2 * self.vocab_size * self.hidden_size

    def prefill_flops(self, batch: int, prompt: int, layers: int | None = None) -> int:
        """FLOPs of one batched prefill as the engine runs it: every prompt token through the layers (attention at
        half the prompt, its mean causal context), the LM head on each sequence's last token only (the logits its
        first output token needs)."""
        per_token = self.flops_per_token(prompt // 2, layers) - self.head_flops()
        return batch * (prompt * per_token + self.head_flops())

    def head_bytes(self, dtype_bytes: int) -> float:
        """What a forward reads outside the layers, once per step: the LM head's weights and the final norm."""
        return (self.lm_head_params() or self.embedding_params()) * dtype_bytes + self.hidden_size * dtype_bytes

    def experts_touched(self, tokens: int) -> float:
        """Expected distinct routed experts hit by `tokens` tokens under uniform routing: E·(1−(1−K/E)^T)."""
        return arith.experts_touched(self.n_routed_experts, self.top_k, tokens)

    def decode_bytes(self, batch: int, context: int, dtype_bytes: int, layers: int | None = None) -> float:
        """Bytes one decode step moves: weights touched (experts actually hit), KV cache read, activations."""
        n = self.num_hidden_layers if layers is None else layers
        h = self.hidden_size
        w = 0.0
        for i in range(n):
            if self.is_moe_layer(i):
                dense_part = self.layer_params(i) - self.n_routed_experts * self.expert_params()
                w += dense_part + self.experts_touched(batch) * self.expert_params()
            else:
                w += self.layer_params(i)
            w += batch * self.attended(i, context) * self.kv_elems_per_token(i)  # KV read
            w += batch * self.kv_elems_per_token(i)  # KV write
            w += 4 * batch * h  # residual stream in/out of the layer, roughly
        w += batch * h
        return w * dtype_bytes + self.head_bytes(dtype_bytes)

    def weight_bytes(self, dtype_bytes: int, layers: int | None = None) -> int:
        n = self.num_hidden_layers if layers is None else layers
        p = self.embedding_params() + self.lm_head_params() + self.hidden_size
        return (p + sum(self.layer_params(i) for i in range(n))) * dtype_bytes

    def kv_bytes(self, batch: int, seq: int, dtype_bytes: int, layers: int | None = None) -> int:
        n = self.num_hidden_layers if layers is None else layers
        return sum(batch * seq * self.kv_elems_per_token(i) for i in range(n)) * dtype_bytes


_REQUIRED = object()


def hf_get(d: dict[str, Any], *keys: str, default: Any = _REQUIRED) -> Any:
    """The first of `keys` that `d` sets; `default` when none is set, and a KeyError naming them without one."""
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    if default is _REQUIRED:
        raise KeyError(" or ".join(keys))
    return default


def _rope(d: dict[str, Any], theta: float, scaling: Optional[dict[str, Any]]) -> tuple[float, Optional[dict[str, Any]]]:
    """(rope_theta, scaling dict or None) from either spelling: Hub configs carry `rope_theta` + `rope_scaling`;
    transformers 5 writes one `rope_parameters` dict holding the theta too. `theta` and `scaling` are the
    family's defaults for a config.json that leaves them out."""
    rp = d.get("rope_parameters")
    if isinstance(rp, dict) and rp and not any(isinstance(v, dict) for v in rp.values()):
        theta = float(hf_get(rp, "rope_theta", default=hf_get(d, "rope_theta", default=theta)))
        scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
    elif isinstance(rp, dict) and rp:
        raise ValueError("per-layer-type rope_parameters are not supported")
    else:
        theta = float(hf_get(d, "rope_theta", default=theta))
        scaling = dict(d["rope_scaling"]) if d.get("rope_scaling") else (dict(scaling) if scaling else None)
    if scaling is not None and (scaling.get("rope_type") or scaling.get("type") or "default") == "default":
        scaling = None
    return theta, scaling


def hf_common(d: dict[str, Any], *, rms_norm_eps: float = 1e-6, rope_theta: float = 10000.0,
              rope_scaling: Optional[dict[str, Any]] = None, head_dim: Optional[int] = None) -> dict[str, Any]:
    """The ArchConfig fields every family reads from the same config.json keys, as keyword arguments.

    A family's parser adds its own fields to these. The keyword arguments are the family's defaults (those of its
    transformers config class) for keys a config.json may leave out; `head_dim` defaults to hidden / heads.
    """
    h, nh = d["hidden_size"], d["num_attention_heads"]
    theta, scaling = _rope(d, rope_theta, rope_scaling)
    return dict(
        model_type=d["model_type"],
        hidden_size=h,
        num_hidden_layers=d["num_hidden_layers"],
        num_attention_heads=nh,
        num_key_value_heads=hf_get(d, "num_key_value_heads", default=nh),
        head_dim=hf_get(d, "head_dim", default=head_dim or h // nh),
        intermediate_size=d["intermediate_size"],
        vocab_size=d["vocab_size"],
        rms_norm_eps=float(hf_get(d, "rms_norm_eps", default=rms_norm_eps)),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=hf_get(d, "max_position_embeddings", default=8192),
        raw=dict(d),
    )


def from_hf(d: dict[str, Any]) -> ArchConfig:
    """Build an ArchConfig from a Hugging Face config.json mapping, with the parser of the registered family that
    lists its `model_type` (ModelSpec.hf_model_types); ValueError for a model_type no family parses."""
    from moebench.models import hf_parsers

    mt = d["model_type"]
    spec = hf_parsers().get(mt)
    if spec is None:
        raise ValueError(f"unsupported model_type {mt!r}")
    return spec.parse_hf(d)
