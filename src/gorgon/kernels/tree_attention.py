"""Tree attention in Triton: N tree tokens over each row's committed cache slots plus the tree itself.

FlashAttention-2 style: a program owns a block of (node, query head) rows that share one KV head (grouped
heads read each K/V tile once), streams the committed slots in tiles with an online softmax, then the
tree's own slots in tiles of 32, masked from the packed ancestor bits (one int32 word per row and tile,
not a dense [N, P + N] mask). Long contexts are split over programs (the tree being one more split) and
merged by a second kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

TREE_TILE = 32  # tree slots per tile: one int32 word of ancestor bits per row


@triton.jit
def _online(s, m_i, l_i, acc, v, PRECISION: tl.constexpr):
    """Fold a tile of scores s [M, T] (-inf where masked) and values v [T, D] into the running softmax."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen nothing yet stays empty
    p = tl.exp(s - m_safe[:, None])
    alpha = tl.exp(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _tree_attention_kernel(
    Q, K, V, COMMITTED, BITS, M_OUT, L_OUT, ACC, OUT, scale, N, NT, HKV, NSPLIT, SPLIT,
    sqb, sqn, sqh, skb, sks, skh, svb, svs, svh, sbb, sbn, sob, son, soh,
    G: tl.constexpr, BLOCK_M: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr,
    DIRECT: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    mb = tl.program_id(1)
    sp = tl.program_id(2)
    b = bh // HKV
    kvh = bh % HKV
    rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)  # row r is (node r // G, head kvh * G + r % G)
    node = rows // G
    head = kvh * G + rows % G
    live = node < N
    d = tl.arange(0, D)
    q = tl.load(
        Q + b * sqb + node[:, None] * sqn + head[:, None] * sqh + d[None, :], mask=live[:, None], other=0.0
    )
    committed = tl.load(COMMITTED + b)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    if DIRECT:
        lo = 0
        hi = committed
    else:
        lo = sp * SPLIT
        hi = tl.minimum(lo + SPLIT, committed)
        hi = tl.where(sp == NSPLIT, lo, hi)  # the last split takes the tree instead
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        inside = cols < hi
        k = tl.load(
            K + b * skb + cols[:, None] * sks + kvh * skh + d[None, :], mask=inside[:, None], other=0.0
        )
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(inside[None, :], s, float("-inf"))
        v = tl.load(
            V + b * svb + cols[:, None] * svs + kvh * svh + d[None, :], mask=inside[:, None], other=0.0
        )
        m_i, l_i, acc = _online(s, m_i, l_i, acc, v, PRECISION)
    if (sp == NSPLIT) | DIRECT:
        jj = tl.arange(0, 32)
        for t0 in range(0, NT, 32):
            j = t0 + jj
            exists = j < NT
            slot = committed + j
            k = tl.load(
                K + b * skb + slot[:, None] * sks + kvh * skh + d[None, :], mask=exists[:, None], other=0.0
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            word = tl.load(BITS + b * sbb + node * sbn + t0 // 32, mask=live, other=0)
            visible = (((word[:, None] >> jj[None, :]) & 1) != 0) & exists[None, :]
            s = tl.where(visible, s, float("-inf"))
            v = tl.load(
                V + b * svb + slot[:, None] * svs + kvh * svh + d[None, :], mask=exists[:, None], other=0.0
            )
            m_i, l_i, acc = _online(s, m_i, l_i, acc, v, PRECISION)
    if DIRECT:
        out = acc / tl.where(l_i == 0, 1.0, l_i)[:, None]  # (l is 0 only on padding rows, never stored)
        dst = OUT + b * sob + node[:, None] * son + head[:, None] * soh + d[None, :]
        tl.store(dst, out.to(OUT.dtype.element_ty), mask=live[:, None])
    else:
        parts = ((b * N + node) * (HKV * G) + head) * (NSPLIT + 1) + sp
        tl.store(M_OUT + parts, m_i, mask=live)
        tl.store(L_OUT + parts, l_i, mask=live)
        tl.store(ACC + parts[:, None] * D + d[None, :], acc, mask=live[:, None])


@triton.jit
def _merge_kernel(M_IN, L_IN, ACC, OUT, PARTS, N, HQ, sob, son, soh, BLOCK_S: tl.constexpr, D: tl.constexpr):
    row = tl.program_id(0)  # (b * N + node) * HQ + head
    b = row // (N * HQ)
    node = (row // HQ) % N
    head = row % HQ
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    inside = s < PARTS
    m = tl.load(M_IN + row * PARTS + s, mask=inside, other=float("-inf"))
    l_ = tl.load(L_IN + row * PARTS + s, mask=inside, other=0.0)
    top = tl.max(m, 0)
    w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))  # splits past the context weigh nothing
    acc = tl.load(ACC + (row * PARTS + s)[:, None] * D + d[None, :], mask=inside[:, None], other=0.0)
    out = tl.sum(acc * w[:, None], 0) / tl.sum(l_ * w, 0)
    tl.store(OUT + b * sob + node * son + head * soh + d, out.to(OUT.dtype.element_ty))


@dataclass(frozen=True)
class Launch:
    """How tree_attention launches: committed slots per tile, warps and software-pipeline stages per
    program, and how the committed context is split: into about `waves` waves of programs, splits of
    at least `min_split` slots. scripts/tree_attention_sweep.py times alternatives on a GPU."""

    block_n: int = 64
    num_warps: int = 4
    num_stages: int | None = None  # None: Triton's default
    waves: int = 2
    min_split: int = 256


DEFAULT_LAUNCH = Launch()


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 132  # the interpreter: size the grid as for an H100
    return torch.cuda.get_device_properties(device).multi_processor_count


def _split_size(span: int, programs: int, sms: int, launch: Launch = DEFAULT_LAUNCH) -> int:
    """Committed slots per program: one program per row block covers the whole context when the grid
    already fills the GPU (partials would only add memory traffic and a merge); otherwise the context is
    split until the grid is about `launch.waves` waves, in splits of at least `launch.min_split` slots
    (multiples of a tile)."""
    if programs >= sms:
        return max(span, 1)
    nsplit = min(triton.cdiv(launch.waves * sms, programs), triton.cdiv(span, launch.min_split))
    tile = launch.block_n
    return max(triton.cdiv(triton.cdiv(span, max(nsplit, 1)), tile) * tile, tile)


def tree_attention(
    q: torch.Tensor,
    cache_k: torch.Tensor,
    cache_v: torch.Tensor,
    committed: torch.Tensor,
    bits: torch.Tensor,
    kv_len: int,
    scale: float,
    out: torch.Tensor | None = None,
    tree_len: int | None = None,
    launch: Launch = DEFAULT_LAUNCH,
) -> torch.Tensor:
    """q [B, N, Hq, D]: the tree's queries; cache rows [B, S, Hkv, D] holding each row's committed keys and
    values at slots < committed[b] and the tree's at committed[b] + j; bits [B, N, ceil(N / 32)] int32,
    the packed ancestor relation (TreeMask.bits); kv_len bounds committed + N over the batch.
    tree_len: the tree's slot count when the queries are only some of its nodes (default N); bits are
    then [B, N, ceil(tree_len / 32)]. Returns [B, N, Hq, D] (into `out` if given). `launch`: tiles, warps
    and splitting (the defaults unless a benchmark sweeps them)."""
    b, n, hq, d = q.shape
    nt = n if tree_len is None else tree_len
    hkv = cache_k.shape[2]
    group = hq // hkv
    rows = n * group
    block_m = 16 if rows <= 16 else (32 if rows <= 32 else 64)
    span = max(kv_len - nt, 1)
    split = _split_size(span, b * hkv * triton.cdiv(rows, block_m), _num_sms(q.device), launch)
    nsplit = triton.cdiv(span, split)
    direct = nsplit == 1
    parts = 1 if direct else b * n * hq * (nsplit + 1)
    m = torch.empty(parts, device=q.device, dtype=torch.float32)
    l_ = torch.empty_like(m)
    acc = torch.empty(parts, d, device=q.device, dtype=torch.float32)
    out = torch.empty_like(q) if out is None else out
    grid = (b * hkv, triton.cdiv(rows, block_m), 1 if direct else nsplit + 1)
    _tree_attention_kernel[grid](
        q, cache_k, cache_v, committed, bits, m, l_, acc, out, scale, n, nt, hkv, nsplit, split,
        q.stride(0), q.stride(1), q.stride(2), cache_k.stride(0), cache_k.stride(1), cache_k.stride(2),
        cache_v.stride(0), cache_v.stride(1), cache_v.stride(2), bits.stride(0), bits.stride(1),
        out.stride(0), out.stride(1), out.stride(2), G=group, BLOCK_M=block_m, D=d, BLOCK_N=launch.block_n,
        DIRECT=direct, PRECISION="ieee" if q.dtype == torch.float32 else "tf32", num_warps=launch.num_warps,
        **({} if launch.num_stages is None else {"num_stages": launch.num_stages}),
    )  # fmt: skip
    if not direct:
        _merge_kernel[(b * n * hq,)](
            m, l_, acc, out, nsplit + 1, n, hq, out.stride(0), out.stride(1), out.stride(2),
            BLOCK_S=triton.next_power_of_2(nsplit + 1), D=d,
        )  # fmt: skip
    return out
