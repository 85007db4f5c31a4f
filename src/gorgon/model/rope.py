"""Rotary position embeddings, with Llama-3.1's frequency rescaling."""

from __future__ import annotations

import math

import torch

from gorgon.config import RopeConfig


def inverse_frequencies(head_dim: int, rope: RopeConfig) -> torch.Tensor:
    """The `head_dim // 2` rotation frequencies, float32, computed as transformers does so that the
    tables agree bit for bit in float32."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv = 1.0 / (rope.theta**exponents)
    if rope.freq_factors:
        return inv / torch.tensor(rope.freq_factors, dtype=torch.float32)
    if rope.kind == "linear":
        return inv / rope.factor
    if rope.kind == "llama3":
        return _llama3_rescale(inv, rope)
    return inv


def _llama3_rescale(inv: torch.Tensor, rope: RopeConfig) -> torch.Tensor:
    # Llama-3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    low_wavelen = rope.original_max_position / rope.low_freq_factor
    high_wavelen = rope.original_max_position / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (rope.original_max_position / wavelen - rope.low_freq_factor) / (
        rope.high_freq_factor - rope.low_freq_factor
    )
    blended = (1 - smooth) * scaled / rope.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, blended, scaled)


def rope_tables(inv_freq: torch.Tensor, max_position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's angles: two float32 tensors [max_position, head_dim // 2]."""
    angles = torch.arange(max_position, dtype=torch.float32)[:, None] * inv_freq[None, :].float()
    return angles.cos(), angles.sin()
