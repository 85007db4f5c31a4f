"""Triton kernels for the decode step: one launch where eager PyTorch needs five to fifteen.

At batch 1 a small model's step is bound by the number of kernels, not by bytes (notes/gpu.md: 1370
kernels of ~1.8 us each for SmolLM2-135M), so each function fuses what the reference does in many
ops: residual add + RMSNorm, RoPE + KV-cache write, SiLU * up, and attention of one new token over the
cache (split over the sequence, then merged). Signatures match `gorgon.kernels.reference`.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from gorgon.errors import GorgonError
from gorgon.kernels import reference
from gorgon.kernels.attention import AttentionMeta
from gorgon.kernels.tree_attention import Launch, tree_attention
from gorgon.kernels.triton_draft import draft_expand  # noqa: F401 (an op of this backend)
from gorgon.kernels.triton_spec import (  # noqa: F401 (ops of this backend)
    accept_greedy,
    commit_step,
    lookup_chain,
    lookup_extend,
)


@triton.jit
def _rms_norm_kernel(X, R, W, Y, H, stride_x, stride_r, stride_y, stride_h, N, eps,
                     HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    inside = cols < N
    x = tl.load(X + row * stride_x + cols, mask=inside, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(R + row * stride_r + cols, mask=inside, other=0.0)
        h = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)  # rounded as an unfused add would be
        tl.store(H + row * stride_h + cols, h, mask=inside)
    else:
        h = x
    hf = h.to(tl.float32)
    var = tl.sum(hf * hf, axis=0) / N
    normed = (hf * (1.0 / tl.sqrt(var + eps))).to(x.dtype)
    w = tl.load(W + cols, mask=inside, other=0.0)
    tl.store(Y + row * stride_y + cols, (w.to(tl.float32) * normed.to(tl.float32)).to(x.dtype), mask=inside)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[-1]
    x2 = x.reshape(-1, n)
    y = torch.empty_like(x2)
    if residual is None:
        r2, h = x2, x
    else:
        r2 = residual.reshape(-1, n)
        h = torch.empty_like(x)
    h2 = h.reshape(-1, n)
    block = triton.next_power_of_2(n)
    _rms_norm_kernel[(x2.shape[0],)](
        x2, r2, weight, y, h2, x2.stride(0), r2.stride(0), y.stride(0), h2.stride(0), n, eps,
        HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=min(16, max(1, block // 256)),
    )  # fmt: skip
    return y.view(x.shape), h


@triton.jit
def _rope_kv_kernel(QKV, POS, SLOT, COS, SIN, QO, KC, VC, T, stride_tok, stride_qo_tok, stride_qo_head,
                    stride_kc_b, stride_kc_s, stride_kc_h, stride_vc_b, stride_vc_s, stride_vc_h, stride_cos,
                    HQ: tl.constexpr, HKV: tl.constexpr, HALF: tl.constexpr):  # fmt: skip
    tok = tl.program_id(0)  # b * T + t
    head = tl.program_id(1)  # q heads, then k heads, then v heads
    b = tok // T
    offs = tl.arange(0, HALF)
    src = QKV + tok * stride_tok + head * 2 * HALF
    x1 = tl.load(src + offs)
    x2 = tl.load(src + HALF + offs)
    slot = tl.load(SLOT + tok)
    if head < HQ + HKV:
        pos = tl.load(POS + tok)
        c = tl.load(COS + pos * stride_cos + offs).to(tl.float32)
        s = tl.load(SIN + pos * stride_cos + offs).to(tl.float32)
        f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
        o1 = (f1 * c - f2 * s).to(x1.dtype)
        o2 = (f2 * c + f1 * s).to(x1.dtype)
        if head < HQ:
            dst = QO + tok * stride_qo_tok + head * stride_qo_head
        else:
            dst = KC + b * stride_kc_b + slot * stride_kc_s + (head - HQ) * stride_kc_h
        tl.store(dst + offs, o1)
        tl.store(dst + HALF + offs, o2)
    else:
        dst = VC + b * stride_vc_b + slot * stride_vc_s + (head - HQ - HKV) * stride_vc_h
        tl.store(dst + offs, x1)
        tl.store(dst + HALF + offs, x2)


def rope_write_kv(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    slots: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    cache_k: torch.Tensor,
    cache_v: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    b, t, width = qkv.shape
    num_kv, d = cache_k.shape[2], cache_k.shape[3]
    assert width == (num_heads + 2 * num_kv) * d and qkv.stride(-1) == 1 and cache_k.stride(-1) == 1
    q = torch.empty(b, t, num_heads, d, device=qkv.device, dtype=qkv.dtype)
    pos, slot = positions.reshape(-1).contiguous(), slots.reshape(-1).contiguous()
    flat = qkv.reshape(b * t, width)
    _rope_kv_kernel[(b * t, num_heads + 2 * num_kv)](
        flat, pos, slot, cos, sin, q, cache_k, cache_v, t, flat.stride(0), q.stride(1), q.stride(2),
        cache_k.stride(0), cache_k.stride(1), cache_k.stride(2), cache_v.stride(0), cache_v.stride(1),
        cache_v.stride(2), cos.stride(0), HQ=num_heads, HKV=num_kv, HALF=d // 2, num_warps=1,
    )  # fmt: skip
    return q


@triton.jit
def _silu_mul_kernel(GU, Y, WIDTH, stride_gu, stride_y, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < WIDTH
    g = tl.load(GU + row * stride_gu + cols, mask=inside, other=0.0)
    u = tl.load(GU + row * stride_gu + WIDTH + cols, mask=inside, other=0.0)
    gf = g.to(tl.float32)
    act = (gf / (1.0 + tl.exp(-gf))).to(g.dtype)  # rounded as F.silu's output would be
    tl.store(Y + row * stride_y + cols, (act.to(tl.float32) * u.to(tl.float32)).to(g.dtype), mask=inside)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    i = gate_up.shape[-1] // 2
    gu = gate_up.reshape(-1, 2 * i)
    y = torch.empty(gu.shape[0], i, device=gu.device, dtype=gu.dtype)
    block = min(1024, triton.next_power_of_2(i))
    _silu_mul_kernel[(gu.shape[0], triton.cdiv(i, block))](gu, y, i, gu.stride(0), y.stride(0), BLOCK=block)
    return y.view(*gate_up.shape[:-1], i)


@triton.jit
def _decode_split_kernel(Q, K, V, POS, M_OUT, L_OUT, ACC, scale, HKV, NSPLIT, stride_qb, stride_qh,
                         stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, stride_pos,
                         OUT, stride_ob, stride_oh, G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr,
                         SPLIT: tl.constexpr, BLOCK_N: tl.constexpr, DIRECT: tl.constexpr,
                         PRECISION: tl.constexpr):  # fmt: skip
    """One (sequence, kv head, slice of the sequence): the softmax-weighted sum over the slice, unnormalised,
    with its running max and denominator, for all G query heads that share the kv head. With DIRECT
    (one slice covers every sequence) the normalised result goes straight to OUT. PRECISION is "ieee" for
    float32 inputs (float32 products, not TF32)."""
    bh = tl.program_id(0)
    sp = tl.program_id(1)
    b = bh // HKV
    kvh = bh % HKV
    length = tl.load(POS + b * stride_pos) + 1
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    q = tl.load(
        Q + b * stride_qb + (kvh * G + g)[:, None] * stride_qh + d[None, :], mask=(g < G)[:, None], other=0.0
    )
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    start = sp * SPLIT
    end = tl.minimum(start + SPLIT, length)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        valid = n < end
        k = tl.load(K + b * stride_kb + n[:, None] * stride_ks + kvh * stride_kh + d[None, :],
                    mask=valid[:, None], other=0.0)  # fmt: skip
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * stride_vb + n[:, None] * stride_vs + kvh * stride_vh + d[None, :],
                    mask=valid[:, None], other=0.0)  # fmt: skip
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    if DIRECT:
        out = acc / l_i[:, None]
        heads = kvh * G + g
        dst = OUT + b * stride_ob + heads[:, None] * stride_oh + d[None, :]
        tl.store(dst, out.to(OUT.dtype.element_ty), mask=(g < G)[:, None])
        return
    rows = (b * HKV * G + kvh * G + g) * NSPLIT + sp  # [B, Hq, NSPLIT] flattened
    tl.store(M_OUT + rows, m_i, mask=g < G)
    tl.store(L_OUT + rows, l_i, mask=g < G)
    tl.store(ACC + rows[:, None] * D + d[None, :], acc, mask=(g < G)[:, None])


@triton.jit
def _decode_merge_kernel(M_IN, L_IN, ACC, OUT, NSPLIT, Hq, stride_ob, stride_oh,
                         BLOCK_S: tl.constexpr, D: tl.constexpr):  # fmt: skip
    row = tl.program_id(0)  # b * Hq + h
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    inside = s < NSPLIT
    m = tl.load(M_IN + row * NSPLIT + s, mask=inside, other=float("-inf"))
    l_ = tl.load(L_IN + row * NSPLIT + s, mask=inside, other=0.0)
    top = tl.max(m, 0)
    w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))  # slices past the sequence weigh nothing
    acc = tl.load(ACC + (row * NSPLIT + s)[:, None] * D + d[None, :], mask=inside[:, None], other=0.0)
    out = tl.sum(acc * w[:, None], 0) / tl.sum(l_ * w, 0)
    b, h = row // Hq, row % Hq
    tl.store(OUT + b * stride_ob + h * stride_oh + d, out.to(OUT.dtype.element_ty))


@triton.jit
def _argmax_partial_kernel(X, VAL, IDX, N, stride_x, NBLOCKS, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    cols = blk * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(X + row * stride_x + cols, mask=cols < N, other=float("-inf")).to(tl.float32)
    best, where = tl.max(x, 0, return_indices=True, return_indices_tie_break_left=True)
    tl.store(VAL + row * NBLOCKS + blk, best)
    tl.store(IDX + row * NBLOCKS + blk, blk * BLOCK + where)


@triton.jit
def _argmax_final_kernel(VAL, IDX, OUT, NBLOCKS, BLOCK_B: tl.constexpr):
    row = tl.program_id(0)
    s = tl.arange(0, BLOCK_B)
    vals = tl.load(VAL + row * NBLOCKS + s, mask=s < NBLOCKS, other=float("-inf"))
    _, where = tl.max(vals, 0, return_indices=True, return_indices_tie_break_left=True)  # earliest block wins
    tl.store(OUT + row, tl.load(IDX + row * NBLOCKS + where))


def argmax(x: torch.Tensor) -> torch.Tensor:
    """Row-wise argmax of x [B, N], first index among equal maxima: two small kernels instead of one
    long single-block reduction (13 us for a 49k vocabulary on the H100)."""
    b, n = x.shape
    block = 4096
    nblocks = triton.cdiv(n, block)
    val = torch.empty(b, nblocks, device=x.device, dtype=torch.float32)
    idx = torch.empty(b, nblocks, device=x.device, dtype=torch.int64)
    _argmax_partial_kernel[(b, nblocks)](x, val, idx, n, x.stride(0), nblocks, BLOCK=block, num_warps=8)
    out = torch.empty(b, device=x.device, dtype=torch.int64)
    _argmax_final_kernel[(b,)](val, idx, out, nblocks, BLOCK_B=max(16, triton.next_power_of_2(nblocks)))
    return out


def _split_size(kv_len: int) -> int:
    # Up to 256 slots one slice (one kernel, no merge); beyond, at most 64 slices per (sequence, kv head),
    # enough programs to keep the GPU busy at batch 1 on long contexts.
    return max(256, triton.next_power_of_2(triton.cdiv(kv_len, 64)))


DECODE_KERNELS = ("tree", "split")
DECODE_LAUNCH = Launch(half_partials=False)


def decode_attention(
    q, cache_k, cache_v, positions: torch.Tensor, kv_len: int, scale: float, kernel: str | None = None
) -> torch.Tensor:
    """One new token per row: q [B, 1, Hq, D] over cache slots [0, position] of rows [B, S, Hkv, D].
    kernel (default $GORGON_DECODE_KERNEL, else "split"): "split", the split-K decode kernel below;
    "tree", the tree kernel with no tree slots. In its first form (whole-round splits of the attended
    length, bf16 partials) the tree kernel was 1.01-1.16x faster in 11 of 12 shapes on the H100
    (reports/h100-2026-11-26c/decode_ab.md) but made graph replays differ from eager steps in bf16; this
    form (splits sized for the cache's capacity, float32 partials) replays eager decoding token for token
    on the GPU and has not been timed yet, so "split" stays the default."""
    kernel = kernel or os.environ.get("GORGON_DECODE_KERNEL") or "split"
    if kernel not in DECODE_KERNELS:
        raise GorgonError(f"GORGON_DECODE_KERNEL / kernel: {kernel!r} is not one of {DECODE_KERNELS}")
    if kernel == "tree":
        # The new token's slot counts as context (no tree slots), and the splits are sized for the
        # cache's capacity, in float32: a graph's bucketed kv_len and eager's exact one then split at the
        # same slots and differ only by empty splits, so graphs replay eager decoding token for token.
        positions = positions.reshape(-1).contiguous()  # the kernel reads committed[b] at stride 1
        return tree_attention(
            q, cache_k, cache_v, positions, None, kv_len, scale, tree_len=0, launch=DECODE_LAUNCH,
            split_span=cache_k.shape[1], context_offset=1,
        )  # fmt: skip
    b, _, hq, d = q.shape
    hkv = cache_k.shape[2]
    group = hq // hkv
    split = _split_size(kv_len)
    nsplit = triton.cdiv(kv_len, split)
    direct = nsplit == 1
    parts = 1 if direct else b * hq * nsplit  # no scratch needed when one slice writes the output
    m = torch.empty(parts, device=q.device, dtype=torch.float32)
    l_ = torch.empty_like(m)
    acc = torch.empty(parts, d, device=q.device, dtype=torch.float32)
    out = torch.empty_like(q)
    _decode_split_kernel[(b * hkv, nsplit)](
        q, cache_k, cache_v, positions, m, l_, acc, scale, hkv, nsplit, q.stride(0), q.stride(2),
        cache_k.stride(0), cache_k.stride(1), cache_k.stride(2), cache_v.stride(0), cache_v.stride(1),
        cache_v.stride(2), positions.stride(0), out, out.stride(0), out.stride(2), G=group,
        BLOCK_G=max(16, triton.next_power_of_2(group)), D=d, SPLIT=split, BLOCK_N=64, DIRECT=direct,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32", num_warps=4,
    )  # fmt: skip
    if direct:
        return out
    _decode_merge_kernel[(b * hq,)](
        m, l_, acc, out, nsplit, hq, out.stride(0), out.stride(2), BLOCK_S=triton.next_power_of_2(nsplit), D=d
    )
    return out


def attend(q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, meta: AttentionMeta,
           scale: float) -> torch.Tensor:  # fmt: skip
    """Decode steps (one causal token per row) run the split decode kernel, trees the tree kernel,
    anything else (prefill, explicit masks) the reference."""
    if meta.tree is not None and q.shape[1] <= 128:
        tree = meta.tree
        return tree_attention(
            q, cache_k, cache_v, tree.committed, tree.bits, meta.kv_len, scale, tree_len=tree.size
        )
    if meta.causal and q.shape[1] == 1:
        return decode_attention(q, cache_k, cache_v, meta.positions, meta.kv_len, scale)
    return reference.attend(q, cache_k, cache_v, meta, scale)


@triton.jit
def _keep_path_kernel(DATA, COMMITTED, PATH, NACC, B, DEPTH, plane_stride, row_stride, slot_stride, WIDTH,
                      BLOCK: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)  # one (key-or-value, layer) plane of one row
    base = DATA + (pid // B) * plane_stride + (pid % B) * row_stride
    b = pid % B
    committed = tl.load(COMMITTED + b)
    accepted = tl.load(NACC + b)
    offs = tl.arange(0, BLOCK)
    # In path order: a node's source slot (committed + its index >= committed + 1 + its depth) lies at or
    # past every destination written before it, so nothing is read after being overwritten.
    for j in range(0, DEPTH):
        if j < accepted:
            src = base + (committed + tl.load(PATH + b * DEPTH + j)) * slot_stride
            dst = base + (committed + 1 + j) * slot_stride
            for w0 in range(0, WIDTH, BLOCK):
                inside = w0 + offs < WIDTH
                tl.store(dst + w0 + offs, tl.load(src + w0 + offs, mask=inside), mask=inside)


def keep_path(
    data: torch.Tensor, committed: torch.Tensor, path: torch.Tensor, n_accepted: torch.Tensor
) -> None:
    """The reference's keep_path as one kernel: a program per (plane, row) copies its accepted slots."""
    b, depth = path.shape
    if depth == 0:
        return
    assert (
        data.stride(-1) == 1
        and data.stride(-2) == data.shape[-1]
        and data.stride(0) == data.shape[1] * data.stride(1)
    )
    width = data.shape[-1] * data.shape[-2]
    planes = data.shape[0] * data.shape[1]
    _keep_path_kernel[(planes * b,)](
        data, committed, path.contiguous(), n_accepted, b, depth, data.stride(1), data.stride(2), data.stride(3),
        width, BLOCK=min(1024, triton.next_power_of_2(width)),
    )  # fmt: skip


@triton.jit
def _embed_concat_kernel(TOK, W, F, IDX, OUT, T, H, s_tok_b, s_w, s_f_b, s_f_r, s_idx_b, s_out_b, s_out_t,
                         HAS_INDEX: tl.constexpr, BLOCK_H: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    b = pid // T
    t = pid % T
    h = tl.arange(0, BLOCK_H)
    inside = h < H
    tok = tl.load(TOK + b * s_tok_b + t)
    r = tl.load(IDX + b * s_idx_b + t) if HAS_INDEX else t
    emb = tl.load(W + tok * s_w + h, mask=inside, other=0.0)
    feat = tl.load(F + b * s_f_b + r * s_f_r + h, mask=inside, other=0.0)
    dst = OUT + b * s_out_b + t * s_out_t
    tl.store(dst + h, emb.to(OUT.dtype.element_ty), mask=inside)
    tl.store(dst + H + h, feat.to(OUT.dtype.element_ty), mask=inside)


def embed_concat(
    tokens: torch.Tensor, weight: torch.Tensor, features: torch.Tensor, index: torch.Tensor | None = None
) -> torch.Tensor:
    """The reference's embed_concat (embedding lookup, feature gather, concatenation) as one kernel."""
    if torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad):
        return reference.embed_concat(tokens, weight, features, index)  # training: autograd's ops
    b, t = tokens.shape
    h = weight.shape[1]
    assert weight.stride(1) == 1 and features.stride(2) == 1 and tokens.stride(1) == 1
    out = torch.empty(b, t, 2 * h, device=features.device, dtype=features.dtype)
    idx = index if index is not None else tokens
    assert idx.stride(1) == 1
    _embed_concat_kernel[(b * t,)](
        tokens, weight, features, idx, out, t, h, tokens.stride(0), weight.stride(0), features.stride(0),
        features.stride(1), idx.stride(0), out.stride(0), out.stride(1),
        HAS_INDEX=index is not None, BLOCK_H=triton.next_power_of_2(h), num_warps=4,
    )  # fmt: skip
    return out


@triton.jit
def _carry_ancestors_kernel(ROWS, BITS, PARENT, O_ROWS, O_BITS, K, P, W, first, s_rows_b, s_rows_r, s_bits_b,
                            s_bits_r, s_par_b, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
                            BLOCK_W: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    i = tl.arange(0, BLOCK_K)
    live = i < K
    parent = tl.load(PARENT + b * s_par_b + i, mask=live, other=0)
    j = tl.arange(0, BLOCK_P)
    cell = live[:, None] & (j < P)[None, :]
    seen = tl.load(ROWS + b * s_rows_b + parent[:, None] * s_rows_r + j[None, :], mask=cell, other=0) != 0
    seen = seen | (j[None, :] == (first + i)[:, None])
    tl.store(O_ROWS + (b * K + i[:, None]) * P + j[None, :], seen.to(tl.int8), mask=cell)
    w = tl.arange(0, BLOCK_W)
    word_cell = live[:, None] & (w < W)[None, :]
    word = tl.load(BITS + b * s_bits_b + parent[:, None] * s_bits_r + w[None, :], mask=word_cell, other=0)
    own = first + i
    mine = tl.where(w[None, :] == (own // 32)[:, None], 1 << (own % 32)[:, None], 0)
    tl.store(O_BITS + (b * K + i[:, None]) * W + w[None, :], word | mine.to(tl.int32), mask=word_cell)


def carry_ancestors(
    rows: torch.Tensor, bits: torch.Tensor, parent: torch.Tensor, first: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's carry_ancestors (2 gathers and 2 ORs) as one kernel."""
    b, k = parent.shape
    p, w = rows.shape[2], bits.shape[2]
    assert rows.stride(2) == 1 and bits.stride(2) == 1 and parent.stride(1) == 1
    new_rows = torch.empty(b, k, p, dtype=torch.bool, device=rows.device)
    new_bits = torch.empty(b, k, w, dtype=torch.int32, device=rows.device)
    _carry_ancestors_kernel[(b,)](
        rows, bits, parent, new_rows.view(torch.int8), new_bits, k, p, w, first, rows.stride(0), rows.stride(1),
        bits.stride(0), bits.stride(1), parent.stride(0), BLOCK_K=max(2, triton.next_power_of_2(k)),
        BLOCK_P=max(16, triton.next_power_of_2(p)), BLOCK_W=max(2, triton.next_power_of_2(w)), num_warps=4,
    )  # fmt: skip
    return new_rows, new_bits
