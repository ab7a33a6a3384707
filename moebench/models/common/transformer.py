"""The pre-norm decoder stack every family shares: embed -> N × (attn, FFN) -> norm -> LM head.

Families differ only in the attention and FFN pieces they plug in (see each family file), so the engine and
the parallel code see one module type.

Legend: B batch, S sequence, M model dim, V vocabulary.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch
from torch import nn

from moebench.models.common.attention import GQAttention
from moebench.models.common.mla import MLAttention
from moebench.models.common.mlp import SwiGLU
from moebench.models.common.moe import MoE
from moebench.models.common.norm import RMSNorm
from moebench.models.config import ArchConfig
from moebench.profile.regions import region

AttentionFactory = Callable[[ArchConfig, int], nn.Module]


class Block(nn.Module):
    def __init__(self, cfg: ArchConfig, layer: int, attention: AttentionFactory):
        super().__init__()
        self.layer = layer
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_scale_fp32)
        self.attn = attention(cfg, layer)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_scale_fp32)
        self.ffn = MoE(cfg, layer) if cfg.is_moe_layer(layer) else SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, start: int, cache: dict | None) -> torch.Tensor:
        with region(f"L{self.layer}/attn"):
            normed, h = self.ffn_norm.add_forward(self.attn(self.attn_norm(x), start, cache), x)
        if isinstance(self.ffn, MoE):  # the MoE opens its own router / experts regions
            return h + self.ffn(normed)
        with region(f"L{self.layer}/mlp"):
            return h + self.ffn(normed)


class DecoderLM(nn.Module):
    """`forward(input_ids_BS) -> logits_BSV`; with a cache from `new_cache`, incremental decode from `start`."""

    def __init__(self, cfg: ArchConfig, attention: AttentionFactory | None = None):
        super().__init__()
        attention = attention or (MLAttention if cfg.attention == "mla" else GQAttention)
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i, attention) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_scale_fp32)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight

    def new_cache(self, batch: int, max_seq: int) -> list[dict[str, torch.Tensor]]:
        """One dict of preallocated tensors per layer (its attention decides the layout: GQA keeps K and V,
        MLA the compressed latent and the rope key)."""
        p = self.lm_head.weight
        return [blk.attn.new_cache(batch, max_seq, p.device, p.dtype) for blk in self.layers]

    def forward(
        self, input_ids_BS: torch.Tensor, cache: list | None = None, start: int = 0, last_only: bool = False
    ) -> torch.Tensor:
        x = self.embed(input_ids_BS)
        for i, blk in enumerate(self.layers):
            x = blk(x, start, None if cache is None else cache[i])
        if last_only:
            x = x[:, -1:]
        with region("lm_head"):
            return self.lm_head(self.norm(x))

    def reset_buffers(self) -> None:
        """Recompute derived buffers (RoPE tables, router bias) after `to_empty` from the meta device."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_buffers"):
                m.reset_buffers()

    @torch.no_grad()
    def init_random(self, seed: int, std: float = 0.02) -> "DecoderLM":
        """Deterministic random weights (HF's initializer_range convention): N(0, std) matrices, unit norms,
        zero biases.

        Each 16M-element chunk of each matrix draws from its own generator seeded by (seed, parameter name,
        chunk), so a tensor's values do not depend on which other layers were built (layer 3 of `layers: 4` is
        layer 3 of the full model) and chunks fill in parallel on CPU: a real-width layer is GBs of normals.
        """
        self.reset_buffers()
        jobs = []
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                jobs += [(f"{seed}/{name}/{i}", c) for i, c in enumerate(p.view(-1).split(_INIT_CHUNK))]
            elif name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.zero_()

        @torch.no_grad()  # grad mode is per thread: the pool's threads need it too
        def fill(job: tuple[str, torch.Tensor]) -> None:
            key, chunk = job
            g = torch.Generator(device=chunk.device).manual_seed(zlib.crc32(key.encode()))
            chunk.normal_(0.0, std, generator=g)

        if jobs and jobs[0][1].device.type == "cpu":
            with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:  # normal_ releases the GIL
                list(pool.map(fill, jobs))
        else:
            for job in jobs:
                fill(job)
        return self


_INIT_CHUNK = 1 << 24
