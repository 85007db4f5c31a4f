"""The CUDA backend's host-side choices (no GPU needed): which tensor-core kernel runs, and its splits."""

from __future__ import annotations

import pytest
import torch

from gorgon.errors import GorgonError
from gorgon.kernels import cuda_ops


def _inputs(n: int, hq: int, hkv: int, d: int, dtype=torch.bfloat16, batch: int = 1):
    q = torch.zeros(batch, n, hq, d, dtype=dtype)
    k = torch.zeros(batch, 256, hkv, d, dtype=dtype)
    return q, k, k, torch.empty_like(q)


@pytest.mark.parametrize(
    "batch, n, hq, hkv, d, want",
    [
        (8, 64, 32, 8, 128, "mma8"),  # Llama-3-8B heads: 256 rows a KV head, 256 4-warp blocks
        (8, 128, 32, 8, 128, "mma8"),
        (1, 64, 32, 8, 128, "mma4"),  # 32 4-warp blocks: the context is split either way
        (8, 16, 32, 8, 128, "mma4"),  # 64 rows: one 4-warp block holds them
        (8, 1, 32, 8, 128, "mma4"),
        (8, 64, 9, 3, 64, "mma4"),  # SmolLM2 heads: head_dim 64
    ],
)
def test_auto_kernel(batch, n, hq, hkv, d, want, monkeypatch):
    monkeypatch.delenv("GORGON_CUDA_KERNEL", raising=False)
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)  # an H100: 132 SMs
    monkeypatch.setattr(cuda_ops, "_hopper", lambda q: False)  # a GPU without wgmma
    tensors = _inputs(n, hq, hkv, d, batch=batch)
    assert cuda_ops._kernel_code(tensors[0], tensors, None, None, 8192) == cuda_ops.KERNELS[want]


@pytest.mark.parametrize(
    "batch, n, hq, hkv, d, span, want",
    [
        (8, 128, 32, 8, 128, 8192, "ws"),  # the warp-specialized kernel wherever it measured faster
        (8, 64, 32, 8, 128, 8192, "ws"),
        (3, 128, 32, 8, 128, 8192, "ws"),
        (1, 64, 32, 8, 128, 8192, "ws"),
        (1, 16, 32, 8, 128, 8192, "ws"),  # 8 blocks of 64 rows, long enough to stream
        (1, 16, 32, 8, 128, 2048, "wgmma8"),  # ... too short: a second warp group to load tiles
        (1, 1, 32, 8, 128, 8192, "ws"),  # 4 rows
        (8, 16, 32, 8, 128, 8192, "ws"),  # 64 blocks
        (8, 64, 9, 3, 64, 8192, "ws"),  # head_dim 64
        # too little context to stream for ws's fixed costs (WS_MIN_WORK: row blocks x slots)
        (1, 64, 9, 3, 64, 256, "wgmma4"),  # the default model's verify step
        (1, 64, 32, 8, 128, 512, "wgmma4"),  # 16 row blocks x 512 slots
        (1, 64, 32, 8, 128, 2048, "ws"),  # 16 x 2048: just enough
        (8, 128, 9, 3, 64, 512, "ws"),  # 72 x 512
    ],
)
def test_auto_kernel_on_hopper(batch, n, hq, hkv, d, span, want, monkeypatch):
    monkeypatch.delenv("GORGON_CUDA_KERNEL", raising=False)
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)
    monkeypatch.setattr(cuda_ops, "_hopper", lambda q: True)
    tensors = _inputs(n, hq, hkv, d, batch=batch)
    assert cuda_ops._kernel_code(tensors[0], tensors, None, None, span) == cuda_ops.KERNELS[want]


def test_kernel_names_force_and_fall_back(monkeypatch):
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)
    tensors = _inputs(64, 32, 8, 128, batch=8)
    q = tensors[0]
    monkeypatch.setenv("GORGON_CUDA_KERNEL", "mma4")
    assert cuda_ops._kernel_code(q, tensors, None, None, 8192) == cuda_ops.KERNELS["mma4"]
    assert cuda_ops._kernel_code(q, tensors, None, "mma8", 8192) == cuda_ops.KERNELS["mma8"]
    assert cuda_ops._kernel_code(q, tensors, False, None, 8192) == cuda_ops.KERNELS["exact"]
    monkeypatch.setenv("GORGON_CUDA_KERNEL", "exact")
    # fast: tensor cores
    assert cuda_ops._kernel_code(q, tensors, True, None, 8192) == cuda_ops.KERNELS["mma8"]
    f32 = _inputs(64, 32, 8, 128, torch.float32, batch=8)
    monkeypatch.delenv("GORGON_CUDA_KERNEL")
    assert cuda_ops._kernel_code(f32[0], f32, None, None, 8192) == cuda_ops.KERNELS["exact"]
    with pytest.raises(GorgonError, match="mma4"):  # the error lists the names that exist
        cuda_ops._kernel_code(q, tensors, None, "fa3", 8192)
    for name in ("wgmma4", "wgmma8"):  # Hopper's forms: named, and forced like the others
        assert cuda_ops._kernel_code(q, tensors, None, name, 8192) == cuda_ops.KERNELS[name]
        assert (
            cuda_ops.BLOCK_ROWS[cuda_ops.KERNELS[name]]
            == cuda_ops.BLOCK_ROWS[cuda_ops.KERNELS[name.replace("wg", "")]]
        )
    assert cuda_ops._kernel_code(q, tensors, None, "ws", 8192) == cuda_ops.KERNELS["ws"]
    monkeypatch.setattr(cuda_ops, "_hopper", lambda q: True)
    assert cuda_ops._kernel_code(q, tensors, None, None, 8192) == cuda_ops.KERNELS["ws"]
    short_v = (*tensors[:2], tensors[2][:, :-8], tensors[3])  # V not shaped like K: no TMA maps for ws
    assert cuda_ops._kernel_code(q, short_v, None, None, 8192) == cuda_ops.KERNELS["wgmma4"]


def test_split_plan_of_the_warp_specialized_kernel(monkeypatch):
    # one 128-row block an SM at either head size, splits in whole 128-slot tiles
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)
    code = cuda_ops.KERNELS["ws"]
    for n, hq, hkv, d, batch in ((1, 32, 8, 128, 1), (64, 32, 8, 128, 1), (64, 9, 3, 64, 2)):
        q, k, _, _ = _inputs(n, hq, hkv, d, batch=batch)
        nsplit, split = cuda_ops.split_plan(q, k, 8192 + n, code)
        blocks = batch * hkv * -(-n * (hq // hkv) // 128)
        assert nsplit > 1 and split % 128 == 0 and blocks * nsplit <= 132
    q, k, _, _ = _inputs(64, 32, 8, 128, batch=8)  # 128 blocks: unsplit
    assert cuda_ops.split_plan(q, k, 8192 + 64, code) == (1, 8192)


def test_split_plan_leaves_short_contexts_unsplit(monkeypatch):
    # under SHORT_WORK (slots x head_dim) one block a row block does all: no merge kernel
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)
    code = cuda_ops.KERNELS["wgmma4"]
    for n, hq, hkv, d, p, unsplit in (
        (16, 9, 3, 64, 256, True),  # the default model's verify step
        (64, 9, 3, 64, 511, True),
        (64, 9, 3, 64, 768, False),
        (64, 32, 8, 128, 200, True),
        (16, 32, 8, 128, 512, False),
    ):
        q, k, _, _ = _inputs(n, hq, hkv, d)
        nsplit, split = cuda_ops.split_plan(q, k, p + n, code)
        assert (nsplit == 1) == unsplit and (not unsplit or split == p)
    q, k, _, _ = _inputs(16, 9, 3, 64)
    assert cuda_ops.split_plan(q, k, 256 + 16, code, splits=2)[0] == 3  # forced splits still split


def test_split_plan_counts_blocks_of_each_kernel(monkeypatch):
    # 132 SMs: two 4-warp blocks an SM at head_dim 128, one 8-warp block.
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)
    q, k, _, _ = _inputs(64, 32, 8, 128)
    span = 8192 + 64
    for code, blocks in ((cuda_ops.KERNELS["mma4"], 32), (cuda_ops.KERNELS["mma8"], 16)):
        nsplit, split = cuda_ops.split_plan(q, k, span, code)
        assert split % 64 == 0 and (nsplit - 1) * split >= span - 64 > (nsplit - 2) * split
        assert blocks * (nsplit - 1) <= (264 if code == 1 else 132) * 2  # about one round an SM


def test_split_plan_balances_grids_short_of_the_sms(monkeypatch):
    # 132 SMs, two 4-warp blocks an SM at full rate: grids of 89-263 of them, with more than 64 rows a KV
    # head, are split by their balance over those places, in splits of at least BALANCE_MIN_SPLIT slots
    # (never fewer than one round has); others in one round
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: 264)
    code = cuda_ops.KERNELS["wgmma4"]

    def splits(batch: int, n: int, p: int, hq: int = 32, hkv: int = 8, d: int = 128) -> int:
        q, k, _, _ = _inputs(n, hq, hkv, d, batch=batch)
        nsplit, split = cuda_ops.split_plan(q, k, p + n, code)
        assert split % 64 == 0 and (max(nsplit - 1, 1)) * split >= p
        return max(nsplit - 1, 1)

    assert splits(2, 128, 8192) == 2  # 128 blocks: one an SM unsplit, two an SM in 2 splits
    assert splits(3, 128, 8192) == 4  # 192 blocks: 4 splits of 2048 spread 768 over 264 places
    assert splits(4, 64, 2048) == 1  # too short for two 2048-slot splits: one round, unsplit
    assert splits(2, 128, 4000) == 1
    assert splits(2, 128, 4096) == 2
    assert splits(8, 128, 8192, 9, 3, 64) == 3  # SmolLM2 heads: 144 blocks
    assert splits(8, 128, 3000, 9, 3, 64) == 2  # one round (4 blocks an SM at head_dim 64): never fewer
    assert splits(8, 64, 8192) == 1  # 256 blocks: a full round
    assert splits(12, 16, 8192) == 1  # 96 blocks of 64 rows, one a KV head: they stream K/V, one round
    assert splits(1, 64, 8192) == 7  # batch 1 (32 blocks): one round of 264 (7 splits + the tree's)


def test_cuda_fused_merge_is_opt_in():
    """The kernels merge their own splits only where asked, never the exact and WMMA kernels, and only
    with a counter for every row block."""
    ws, exact, wmma = (cuda_ops.KERNELS[k] for k in ("ws", "exact", "wmma"))
    assert cuda_ops.fuse_merge(ws, 8, fuse=True)
    assert not cuda_ops.fuse_merge(ws, 8, fuse=False)
    assert not cuda_ops.fuse_merge(exact, 8, fuse=True) and not cuda_ops.fuse_merge(wmma, 8, fuse=True)
    assert not cuda_ops.fuse_merge(ws, cuda_ops.MAX_BLOCK_COUNTERS + 1, fuse=True)


def test_cuda_pdl_merges_by_default_for_the_hopper_kernels_only(monkeypatch):
    """The merge is a programmatic dependent launch by default for the ws kernel at most 64 rows a KV head
    and the wgmma kernels over 16 (never the mma kernels); GORGON_PDL=0 / 1 forces it, and any other value
    is one clear error."""
    ws, mma4 = cuda_ops.KERNELS["ws"], cuda_ops.KERNELS["mma4"]
    wgmma4, wgmma8 = cuda_ops.KERNELS["wgmma4"], cuda_ops.KERNELS["wgmma8"]
    monkeypatch.delenv("GORGON_PDL", raising=False)
    assert cuda_ops.pdl(ws, 64) and cuda_ops.pdl(ws, 1)
    assert not cuda_ops.pdl(ws, 65) and not cuda_ops.pdl(mma4, 64)
    assert cuda_ops.pdl(wgmma4, 48) and cuda_ops.pdl(wgmma8, 64) and cuda_ops.pdl(wgmma4, 256)
    assert not cuda_ops.pdl(wgmma4, 4) and not cuda_ops.pdl(wgmma8, 16)
    monkeypatch.setenv("GORGON_PDL", "0")
    assert not cuda_ops.pdl(ws, 64)
    monkeypatch.setenv("GORGON_PDL", "1")
    assert cuda_ops.pdl(mma4, 256)
    monkeypatch.setenv("GORGON_PDL", "yes")
    with pytest.raises(GorgonError, match="GORGON_PDL"):
        cuda_ops.pdl(ws, 64)
