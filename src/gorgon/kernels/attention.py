"""Attention over the KV cache with an arbitrary mask: the reference implementation (PyTorch SDPA)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import torch
import torch.nn.functional as F


@dataclass
class TreeMask:
    """A tree written at cache slots committed .. committed + N - 1 of each row: every node sees all
    committed slots and, among the tree's, its ancestors and itself. committed [B] int64; ancestors
    [B, N, N] bool (ancestors[b, i, j]: node j is node i or one of its ancestors).

    The queries may also be some of a larger tree's nodes (a drafter growing its tree level by level):
    ancestors [B, M, N] then says which of the N tree slots each of the M queries sees."""

    committed: torch.Tensor
    ancestors: torch.Tensor
    _bits: torch.Tensor | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        """The tree's slot count N."""
        return self.ancestors.shape[2]

    @property
    def square(self) -> bool:
        """Whether the queries are the tree's nodes themselves, in order."""
        return self.ancestors.shape[1] == self.ancestors.shape[2]

    def dense(self, kv_len: int) -> torch.Tensor:
        """The mask as [B, M, kv_len] bool."""
        b, m, n = self.ancestors.shape
        slots = torch.arange(kv_len, device=self.ancestors.device)
        rel = slots[None, :] - self.committed[:, None]  # index into the tree, or < 0 for committed slots
        inside = (rel >= 0) & (rel < n)
        gathered = torch.gather(self.ancestors, 2, rel.clamp(0, n - 1)[:, None, :].expand(b, m, kv_len))
        return (rel[:, None, :] < 0) | (inside[:, None, :] & gathered)

    @property
    def bits(self) -> torch.Tensor:
        """The ancestor relation packed into int32 words [B, M, ceil(N / 32)]: bit j % 32 of word j // 32
        of row i is set when node j is visible to query i. What the kernels read instead of a dense mask
        (given at construction when the caller has it already)."""
        if self._bits is None:
            self._bits = pack_ancestors(self.ancestors)
        return self._bits


def split_in_rounds(
    span: int, programs: int, slots: int, min_split: int, tile: int, tree_split: bool = True
) -> int:
    """Committed slots per split for the tree-attention kernels (Triton and CUDA): a grid of `programs`
    row blocks per split is split so that all splits (plus the tree's own split, where the kernel gives
    the tree one: `tree_split`) fit `slots` programs, one round (a program too many would start a second
    round that runs nearly alone: 16-20% slower at batch 1 with N=64 and 128 on the H100), into no more
    splits than the context has `min_split`-slot pieces, each a multiple of `tile`."""
    nsplit = max(min(slots // programs - tree_split, _cdiv(span, min_split)), 1)
    return tile_split(span, nsplit, tile)


def tile_split(span: int, count: int, tile: int) -> int:
    """Slots per split of `span` slots in `count` splits of whole `tile`-slot tiles (the last one shorter,
    and fewer splits where rounding up to tiles leaves nothing for the last)."""
    return _cdiv(_cdiv(span, count), tile) * tile


BALANCE_MAX_SPLITS = 6  # context splits a row block at most under balanced_splits
BALANCE_SLACK = 1.15  # the fewest splits whose modelled time is within this of the best


@cache  # once a shape, not once a layer of every eager step
def balanced_splits(programs: int, slots: int, most: int) -> int:
    """Context splits of each of `programs` row blocks bound by their products, on `slots` places that run
    at once (the SMs for 128-row blocks, which keep an SM's tensor cores busy alone): the fewest whose
    modelled time is within BALANCE_SLACK of the best, up to `most` (the splits the context allows) and
    BALANCE_MAX_SPLITS. Programs sharing a place share its
    throughput, so k splits take about ceil(k * programs / slots) / k of the unsplit time (the tree's
    short programs fill the gaps). Where one round of resident programs was the plan, these grids ran a
    second split on a few SMs doubled up (SmolLM2 heads, batch 8, N=128: 144 context programs on 132
    SMs) or stayed unsplit on half the SMs (Llama-3-8B heads, batch 2, N=128: 64 programs). Triton
    kernels, cold L2, H100 (reports/h100-2026-11-27c/splits), against that plan: SmolLM2 heads, batch 8,
    N=128, P=8192 2 -> 3 splits 86.7 -> 64.1 us, P=2048 31.2 -> 25.6; batch 16, N=64 unsplit -> 4 splits
    108.4 -> 80.8; Llama-3-8B heads (warp-specialized kernel), batch 2, N=128 and batch 4, N=64, P=8192
    unsplit -> 2 splits 102.6 -> 70.3 and 104.4 -> 77.6."""
    cost = {k: _cdiv(k * programs, slots) / k for k in range(1, max(min(most, BALANCE_MAX_SPLITS), 1) + 1)}
    best = min(cost.values())
    return min(k for k, c in cost.items() if c <= BALANCE_SLACK * best)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def pack_ancestors(ancestors: torch.Tensor) -> torch.Tensor:
    """A visibility relation [..., M, N] bool packed into int32 words [..., M, ceil(N / 32)]: bit j % 32 of
    word j // 32 of row i is set when node j is visible to query i (TreeMask.bits)."""
    *lead, n = ancestors.shape
    words = -(-n // 32)
    padded = torch.zeros(*lead, words * 32, dtype=torch.int64, device=ancestors.device)
    padded[..., :n] = ancestors.long()
    shifts = torch.arange(32, device=padded.device, dtype=torch.int64)
    packed = (padded.view(*lead, words, 32) << shifts).sum(-1)  # distinct bits: the sum is an OR
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


@dataclass
class AttentionMeta:
    """Which cache slots each new token may attend to, shared by all layers of one forward.

    positions [B, T]: the tokens' positions; kv_len: how many leading slots are attended; then either
    mask [B, T, kv_len] bool, or tree (a TreeMask: the tokens are a tree after the committed slots), or
    neither: causal by position (slot s visible when s <= position), which is what prefill and plain
    decoding need and what the decode kernels compute without a mask.
    """

    positions: torch.Tensor
    kv_len: int
    mask: torch.Tensor | None = None
    tree: TreeMask | None = None
    _dense: torch.Tensor | None = field(default=None, repr=False)

    @property
    def causal(self) -> bool:
        return self.mask is None and self.tree is None

    def dense_mask(self) -> torch.Tensor:
        """The mask as a [B, T, kv_len] bool tensor (built once, on first use)."""
        if self.mask is not None:
            return self.mask
        if self.tree is not None:
            if self._dense is None:
                self._dense = self.tree.dense(self.kv_len)
            return self._dense
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


MAX_BLOCK_COUNTERS = 1 << 16  # row blocks a launch may count on (block_counters): 256 KiB a device
_block_counters: dict[torch.device, torch.Tensor] = {}


def block_counters(device: torch.device) -> torch.Tensor:
    """Counters a row block, zero between launches: the Triton dynamic-tile kernel's claims (each
    launch's last claim zeroes its counter) and the fused merges' arrivals, Triton's and CUDA's (the last
    arrival zeroes it). One buffer a device, allocated once and never freed, so that CUDA graphs may
    capture its address. Launches on concurrent streams would share it: Gorgon's steps run on one
    stream."""
    if device not in _block_counters:
        _block_counters[device] = torch.zeros(MAX_BLOCK_COUNTERS, dtype=torch.int32, device=device)
    return _block_counters[device]
