"""A model plugin is a frozen spec: family, dense or MoE, flavors (typed configs), a builder, how its Hugging Face
`config.json` maps to its config (`parse_hf`, for the `hf_model_types` it lists) and how its checkpoints name the
pieces (`HFNames`; the loader in checkpoint.py does the rest)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from moebench.models.config import ArchConfig, from_hf


def build_decoder(cfg: ArchConfig) -> Any:
    """The shared pre-norm decoder stack (attention variant from `cfg.attention`); imports torch on call, so
    listing models never does."""
    from moebench.models.common.transformer import DecoderLM

    return DecoderLM(cfg)


@dataclass(frozen=True)
class HFNames:
    """What a family's HF checkpoints call the pieces whose names differ between families.

    Everything else follows the Llama naming every family shares (model.layers.{i}.self_attn.q_proj, …).
    """

    moe: tuple[str, ...] = ("mlp",)  # the MoE block of a layer; the first one present wins
    router: str = "gate"
    # per-expert tensors experts.{j}.<gate|up|down>.weight as on the Hub; None: the family has none
    experts: Optional[tuple[str, str, str]] = ("gate_proj", "up_proj", "down_proj")
    # fused experts.gate_up_proj: "rows" = [E, 2F, D] gate rows then up rows (transformers 5 layout);
    # "gpt_oss" = [E, D, 2F] with gate and up interleaved along 2F (even gate, odd up), plus biases
    fused: Literal["rows", "gpt_oss"] = "rows"
    # DeepSeek stores rope dims interleaved unless config.json says rope_interleave: false
    rope_interleave_default: bool = False


@dataclass(frozen=True)
class ModelSpec:
    family: str
    kind: Literal["dense", "moe"]
    description: str
    build: Callable[[ArchConfig], Any]  # config -> nn.Module (DecoderLM-compatible), uninitialised
    debug: dict[str, Any]  # HF-style config.json of the CPU-sized `debug` flavor
    hf_model_types: tuple[str, ...] = ()  # config.json model_type values this family loads
    # config.json mapping of one of hf_model_types -> ArchConfig (ValueError/KeyError for what it cannot run);
    # None: the family's configs are written in a model_type another family parses
    parse_hf: Optional[Callable[[dict[str, Any]], ArchConfig]] = None
    hf_names: HFNames = HFNames()
    extra_flavors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def arch(self, d: dict[str, Any]) -> ArchConfig:
        """The ArchConfig of a config.json mapping: this family's parser for its own model_types, otherwise the
        parser of the registered family that lists d's model_type."""
        if self.parse_hf is not None and d.get("model_type") in self.hf_model_types:
            return self.parse_hf(d)
        return from_hf(d)

    @functools.cached_property
    def flavors(self) -> dict[str, ArchConfig]:
        """Real flavors from the catalog (one source for each number), plus `debug` and any extras."""
        from moebench.catalog import reference_models

        out = {"debug": self.arch(self.debug)}
        for name, ref in reference_models().items():
            fam, flavor = name.split(":")
            if fam == self.family:
                out[flavor] = self.arch(ref.config)
        for name, cfg in self.extra_flavors.items():
            out[name] = self.arch(cfg)
        return out

    def config(self, flavor: str) -> ArchConfig:
        from moebench.errors import BadInput
        from moebench.registry import did_you_mean

        if flavor not in self.flavors:
            names = [f"{self.family}:{f}" for f in self.flavors]
            raise BadInput(f"unknown model {self.family}:{flavor!r}{did_you_mean(f'{self.family}:{flavor}', names)}")
        return self.flavors[flavor]
