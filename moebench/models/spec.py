"""A model plugin is a frozen spec: family, dense or MoE, flavors (typed configs), a builder, an HF key map."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from moebench.models.config import ArchConfig, from_hf


@dataclass(frozen=True)
class ModelSpec:
    family: str
    kind: Literal["dense", "moe"]
    description: str
    build: Callable[[ArchConfig], Any]  # config -> nn.Module (DecoderLM-compatible), uninitialised
    debug: dict[str, Any]  # HF-style config.json of the CPU-sized `debug` flavor
    hf_model_types: tuple[str, ...] = ()
    # HF tensor name -> (our parameter name, transform) ; None: the family has no checkpoint loader
    hf_key_map: Optional[Callable[[ArchConfig], Any]] = None
    extra_flavors: dict[str, dict[str, Any]] = field(default_factory=dict)

    @functools.cached_property
    def flavors(self) -> dict[str, ArchConfig]:
        """Real flavors from the catalog (one source for each number), plus `debug` and any extras."""
        from moebench.catalog import reference_models

        out = {"debug": from_hf(self.debug)}
        for name, ref in reference_models().items():
            fam, flavor = name.split(":")
            if fam == self.family:
                out[flavor] = from_hf(ref.config)
        for name, cfg in self.extra_flavors.items():
            out[name] = from_hf(cfg)
        return out

    def config(self, flavor: str) -> ArchConfig:
        from moebench.errors import BadInput
        from moebench.registry import did_you_mean

        if flavor not in self.flavors:
            names = [f"{self.family}:{f}" for f in self.flavors]
            raise BadInput(f"unknown model {self.family}:{flavor!r}{did_you_mean(f'{self.family}:{flavor}', names)}")
        return self.flavors[flavor]
