"""Pieces every family composes: norms, RoPE variants, attention variants, dense MLP, MoE, the decoder stack."""
