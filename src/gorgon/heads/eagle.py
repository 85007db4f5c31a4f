"""The EAGLE draft layer: one decoder layer that predicts the target's next hidden state (its "feature")
from the current feature and the next token, reading the target's embedding and LM head.

Input at position p is the pair (f_p, x_{p+1}): the target's final hidden state at p and the token that
followed. fc maps their concatenation [embed(x_{p+1}), f_p] back to the hidden size, a Llama decoder
layer (attention over the layer's own KV cache of earlier pairs) predicts f_{p+1}, and the target's LM
head turns that into a distribution over x_{p+2}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from gorgon.config import ModelConfig
from gorgon.kernels import AttentionMeta, TreeMask, reference
from gorgon.kv_cache import KVCache
from gorgon.model.llama import Block, Llama


@dataclass
class EagleConfig:
    hidden_size: int
    top_k: int = 8  # drafting: children kept per expanded node, and nodes expanded per level
    depth: int = 5  # drafting: levels grown per step
    total_tokens: int = 32  # drafting: drafted nodes kept for verification (the tree has one more)
    # drafting scores only these tokens (the training answers' most frequent, most frequent first; empty:
    # the whole vocabulary): a far smaller LM head per level, as FR-Spec does; verification is unchanged
    draft_vocab: tuple[int, ...] = ()

    def to_json(self) -> dict:
        d = asdict(self)
        d["draft_vocab"] = list(self.draft_vocab)
        return d

    @classmethod
    def from_json(cls, d: dict) -> EagleConfig:
        keys = ("hidden_size", "top_k", "depth", "total_tokens")
        return cls(**{k: d[k] for k in keys if k in d}, draft_vocab=tuple(d.get("draft_vocab", ())))


class EagleLayer(nn.Module):
    def __init__(self, target_config: ModelConfig):
        super().__init__()
        self.ops = reference  # the backend of embed_concat (use_kernels points it at the target's)
        h = target_config.hidden_size
        self.fc = nn.Linear(2 * h, h)
        self.block = Block(target_config)
        self.cache_config = ModelConfig(**{**asdict(target_config), "num_layers": 1})

    def new_cache(self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        return KVCache(self.cache_config, batch, capacity, device, dtype)

    def forward(
        self,
        target: Llama,
        features: torch.Tensor,
        next_tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        slots: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        kv_len: int | None = None,
        tree: TreeMask | None = None,
        feature_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted features [B, T, H] for pairs (features [B, T, H], next_tokens [B, T]) at positions
        [B, T], their keys and values written to the layer's cache at slots (default: the positions).
        Attention is causal by position unless `mask` or `tree` (the drafted pool so far) says otherwise.
        feature_index [B, T]: pair t reads features[b, feature_index[b, t]] instead (features [B, R, H]),
        a gather the input kernel does on the way."""
        pairs = self.ops.embed_concat(next_tokens, target.embed.weight, features, feature_index)
        x = self.fc(pairs)
        slots = positions if slots is None else slots
        kv_len = mask.shape[-1] if mask is not None else (cache.capacity if kv_len is None else kv_len)
        meta = AttentionMeta(positions, kv_len, mask, tree)
        rope = (target.rope_cos, target.rope_sin)
        return self.block(x, None, rope, cache.layer(0, x.shape[0]), slots, meta, summed=True)
