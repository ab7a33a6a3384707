"""MoE layer shapes of published models (the routed experts only), for tuning and standalone benchmarks.

Values are the checkpoints' config.json fields: hidden_size (D), moe_intermediate_size or intermediate_size (F),
n_routed_experts / num_local_experts / num_experts (E), num_experts_per_tok (K).
"""

from __future__ import annotations

from typing import NamedTuple


class LayerShape(NamedTuple):
    experts: int
    top_k: int
    hidden: int
    ffn: int
    activation: str = "silu"
    bias: bool = False


SHAPES: dict[str, LayerShape] = {
    "mixtral-8x7b": LayerShape(8, 2, 4096, 14336),                 # mistralai/Mixtral-8x7B-v0.1
    "qwen3-30b-a3b": LayerShape(128, 8, 2048, 768),                # Qwen/Qwen3-30B-A3B
    "deepseek-v3": LayerShape(256, 8, 7168, 2048),                 # deepseek-ai/DeepSeek-V3
    "gpt-oss-120b": LayerShape(128, 4, 2880, 2880, "swiglu_oai", True),  # openai/gpt-oss-120b
    "kimi-k2": LayerShape(384, 8, 7168, 2048),                     # moonshotai/Kimi-K2-Instruct
}
