"""Named model shapes, and random-weight models of them (to time models that cannot be downloaded)."""

from __future__ import annotations

import torch

from gorgon.config import ModelConfig, RopeConfig
from gorgon.errors import GorgonError
from gorgon.model.llama import Llama

SHAPES = {
    "llama-3-8b": ModelConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        rms_norm_eps=1e-5,
        rope=RopeConfig(theta=500000.0, kind="llama3", factor=8.0, original_max_position=8192),
        max_position=131072,
        tie_embeddings=False,
        eos_token_ids=(128001, 128009),
    ),
    "smollm2-135m": ModelConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        rms_norm_eps=1e-5,
        rope=RopeConfig(theta=100000.0),
        max_position=8192,
        tie_embeddings=True,
        eos_token_ids=(2,),
    ),
}


def shape(name: str) -> ModelConfig:
    if name not in SHAPES:
        raise GorgonError(f"unknown model shape {name!r}; known: {', '.join(SHAPES)}", "shape")
    return SHAPES[name]


def random_model(config: ModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Llama:
    """A model of this shape with N(0, 0.02) matrices and unit norms, built directly on `device`."""
    with torch.device("meta"):
        model = Llama(config)
    model = model.to_empty(device=device).to(dtype)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.reset_rope()
    return model.eval().requires_grad_(False)
