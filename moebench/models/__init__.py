"""Model families (plugins in the `moebench.models` entry-point group) and the loading API.

    moebench.models.load("mixtral:debug")            # random weights from a fixed seed
    moebench.models.load("/path/to/hf_checkpoint")   # real weights (config.json + safetensors)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from moebench.errors import BadInput
from moebench.registry import Registry, did_you_mean

if TYPE_CHECKING:
    from moebench.models.config import ArchConfig
    from moebench.models.spec import ModelSpec


def registry() -> "Registry[ModelSpec]":
    from moebench.models.spec import ModelSpec

    return Registry("moebench.models", ModelSpec)


def hf_parsers() -> dict[str, "ModelSpec"]:
    """config.json `model_type` -> the installed family that parses it (every family is loaded to ask); BadInput
    when two families parse the same model_type."""
    reg = registry()
    out: dict[str, ModelSpec] = {}
    for name in reg.names():
        spec = reg.load(name)
        if spec.parse_hf is None:
            continue
        for mt in spec.hf_model_types:
            prior = out.setdefault(mt, spec)
            if prior is not spec:
                raise BadInput(f"plugin conflict in {reg.group}: model_type {mt!r} is parsed by both "
                               f"{prior.family!r} and {spec.family!r}")
    return out


def all_names() -> list[str]:
    reg = registry()
    return [f"{fam}:{fl}" for fam in reg.names() for fl in reg.load(fam).flavors]


def resolve_name(name: str) -> tuple["ModelSpec", "ArchConfig"]:
    """`family:flavor` -> (spec, config); unknown names get a did-you-mean over every known model."""
    family, _, flavor = name.partition(":")
    reg = registry()
    if family not in reg.names():
        candidates = [f"{f}:x" for f in reg.names()]
        hint = did_you_mean(name, all_names()) or did_you_mean(f"{family}:x", candidates).replace(":x", "")
        raise BadInput(f"unknown model {name!r}{hint}")
    spec = reg.load(family)
    if flavor not in spec.flavors:
        raise BadInput(f"unknown model {name!r}{did_you_mean(name, [f'{family}:{f}' for f in spec.flavors])}")
    return spec, spec.flavors[flavor]


def entry_arch(name: str, weights: str = "random", layers: int | None = None) -> tuple["ModelSpec", "ArchConfig"]:
    """(spec, config with `layers` applied) of a workload's model entry: the catalog's for random weights, the
    checkpoint's (checked against the name) for `weights: <dir>`; BadInput when `layers` exceeds the model's."""
    if weights == "random":
        spec, cfg = resolve_name(name)
    else:
        from moebench.models.checkpoint import check_checkpoint_entry

        spec, cfg = check_checkpoint_entry(name, weights)
    if layers is not None and layers > cfg.num_hidden_layers:
        what = name if weights == "random" else f"the checkpoint in {weights}"
        raise BadInput(f"layers {layers} but {what} has {cfg.num_hidden_layers}")
    return spec, cfg.with_layers(layers)


def load(source: str, *, layers: int | None = None, device: str = "cpu", dtype: Any = None, seed: int = 0):
    """A model module: `forward(input_ids_BS) -> logits [B, S, vocab]`, `new_cache`, incremental decode.

    `source` is `family:flavor` (random weights from `seed`) or a Hugging Face checkpoint directory.
    """
    import torch

    dtype = dtype or torch.float32
    if Path(source).is_dir():
        from moebench.models.checkpoint import load_checkpoint

        return load_checkpoint(source, layers=layers, device=device, dtype=dtype)
    spec, cfg = resolve_name(source)
    cfg = cfg.with_layers(layers)
    return build(spec, cfg, device=device, dtype=dtype, seed=seed)


def build(spec: "ModelSpec", cfg: "ArchConfig", *, device: str, dtype: Any, seed: int = 0):
    """The family's module for `cfg` on `device` in `dtype`, with random weights from `seed`."""
    model = materialize(spec, cfg, device=device, dtype=dtype)
    model.init_random(seed)
    return model.eval()


def materialize(spec: "ModelSpec", cfg: "ArchConfig", *, device: str, dtype: Any):
    """The module with uninitialised storage on `device`: built on the meta device first, so a real-width layer
    is allocated once and never pays for nn.Linear's default init (the caller fills every tensor)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = spec.build(cfg)
    finally:
        torch.set_default_dtype(old)
    model = model.to_empty(device=device)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed.weight
    model.reset_buffers()
    return model
