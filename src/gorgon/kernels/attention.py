"""Attention over the KV cache with an arbitrary mask: the reference implementation (PyTorch SDPA)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class AttentionMeta:
    """Which cache slots each new token may attend to, shared by all layers of one forward.

    positions [B, T]: the tokens' positions; kv_len: how many leading slots are attended; mask
    [B, T, kv_len] bool, or None for causal-by-position (slot s visible when s <= position), which
    is what prefill and plain decoding need and what the decode kernels compute without a mask.
    """

    positions: torch.Tensor
    kv_len: int
    mask: torch.Tensor | None = None
    _dense: torch.Tensor | None = field(default=None, repr=False)

    @property
    def causal(self) -> bool:
        return self.mask is None

    def dense_mask(self) -> torch.Tensor:
        """The mask as a [B, T, kv_len] bool tensor (built once, on first use)."""
        if self.mask is not None:
            return self.mask
        if self._dense is None:
            slots = torch.arange(self.kv_len, device=self.positions.device)
            self._dense = slots[None, None, :] <= self.positions[:, :, None]
        return self._dense


def write_kv(
    cache_k: torch.Tensor, cache_v: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor
) -> None:
    """Store k, v [B, T, Hkv, D] into cache rows [B, S, Hkv, D] at slots [B, T] (in place)."""
    rows = torch.arange(k.shape[0], device=k.device)[:, None]
    cache_k.index_put_((rows, slots), k)
    cache_v.index_put_((rows, slots), v)


def attention(
    q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Softmax attention of queries over cached keys, each query seeing only the slots its mask allows.

    q [B, T, Hq, D]; cache_k, cache_v [B, S, Hkv, D] with Hq a multiple of Hkv (grouped-query heads
    share a key/value head without copies); mask [B, T, S] bool, True where a query may attend.
    Returns [B, T, Hq, D].
    """
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        cache_k.transpose(1, 2),
        cache_v.transpose(1, 2),
        attn_mask=mask[:, None],
        scale=scale,
        enable_gqa=q.shape[2] != cache_k.shape[2],
    )
    return out.transpose(1, 2)
