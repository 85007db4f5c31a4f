"""One level of a drafted tree in two kernels: log-softmax, top-k and the best children across nodes.

EAGLE-style drafting grows its tree level by level: for each expanded node, the k most likely next
tokens, scored by cumulative log-probability, then the k best of those children across the nodes. In
PyTorch that is log_softmax, two top-k passes, index arithmetic, a score sum, another top-k and gathers:
about ten kernels per level, each a few microseconds at batch 1, more than the level's layer forward
costs on the draft vocabulary. Here it is two launches:

1. one program per (node, chunk of the vocabulary): the chunk's max, sum of exponentials and its own top k;
2. one program per row: each node's log-sum-exp from its chunks, then k rounds of "take the best
   remaining candidate" over every node's chunk candidates, with the parent's score added.

Same result as `reference.draft_expand` (ties broken towards the lower node, then the lower column).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK = 1024  # vocabulary columns per program of the first kernel


@triton.jit
def _chunk_kernel(X, M, S, TV, TI, V, stride_x, NCHUNK, K: tl.constexpr, CHUNK: tl.constexpr):
    node, c = tl.program_id(0), tl.program_id(1)
    offs = tl.arange(0, CHUNK)
    cols = c * CHUNK + offs
    x = tl.load(X + node * stride_x + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
    m = tl.max(x, 0)
    out = node * NCHUNK + c
    tl.store(M + out, m)
    tl.store(S + out, tl.sum(tl.exp(x - m), 0))
    for i in tl.static_range(K):
        best, where = tl.max(x, 0, return_indices=True, return_indices_tie_break_left=True)
        tl.store(TV + out * K + i, best)
        tl.store(TI + out * K + i, c * CHUNK + where)
        x = tl.where(offs == where, float("-inf"), x)


@triton.jit
def _select_kernel(M, S, TV, TI, PS, VOCAB, OS, OT, OP, R, NCHUNK,
                   HAS_PARENT: tl.constexpr, HAS_VOCAB: tl.constexpr, K: tl.constexpr,
                   R_BLOCK: tl.constexpr, C_BLOCK: tl.constexpr, W_BLOCK: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    r1 = tl.arange(0, R_BLOCK)
    r = r1[:, None]
    c = tl.arange(0, C_BLOCK)[None, :]
    # each node's log-sum-exp over the vocabulary, from its chunks' maxima and sums
    chunk_ok = (r < R) & (c < NCHUNK)
    m = tl.load(M + (b * R + r) * NCHUNK + c, mask=chunk_ok, other=float("-inf"))
    s = tl.load(S + (b * R + r) * NCHUNK + c, mask=chunk_ok, other=0.0)
    node_max = tl.where(r1 < R, tl.max(m, 1), 0.0)
    total = tl.sum(s * tl.exp(m - node_max[:, None]), 1)
    lse = node_max + tl.log(tl.where(r1 < R, total, 1.0))  # (rows past R: padding)
    base = tl.where(r1 < R, -lse, 0.0)
    if HAS_PARENT:
        base += tl.load(PS + b * R + r1, mask=r1 < R, other=0.0)
    # every node's chunk candidates, scored as parent + log-probability
    w = tl.arange(0, W_BLOCK)[None, :]
    width = NCHUNK * K
    ok = (r < R) & (w < width)
    flat = r * width + w
    tv = tl.load(TV + b * R * width + flat, mask=ok, other=float("-inf"))
    score = tl.where(ok, tv + base[:, None], float("-inf"))
    big = R_BLOCK * W_BLOCK
    for i in tl.static_range(K):
        best = tl.max(tl.max(score, 1), 0)
        # (clamped: a row of NaN scores, a finished row's garbage, must still read inside the buffers)
        pos = tl.minimum(tl.min(tl.min(tl.where(score == best, flat, big), 1), 0), R * width - 1)
        token = tl.load(TI + b * R * width + pos).to(tl.int64)
        if HAS_VOCAB:
            token = tl.load(VOCAB + token)
        tl.store(OS + b * K + i, best)
        tl.store(OT + b * K + i, token)
        tl.store(OP + b * K + i, (pos // width).to(tl.int64))
        score = tl.where(flat == pos, float("-inf"), score)


def draft_expand(
    logits: torch.Tensor, parent_scores: torch.Tensor | None, k: int, vocab: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See `reference.draft_expand`: logits [B, R, V] -> (scores [B, k], tokens [B, k], parents [B, k])."""
    b, r, v = logits.shape
    x = logits.reshape(b * r, v)
    if x.stride(-1) != 1:
        x = x.contiguous()
    chunk = min(CHUNK, triton.next_power_of_2(v))
    nchunk = triton.cdiv(v, chunk)
    dev = logits.device
    m = torch.empty(b * r, nchunk, device=dev, dtype=torch.float32)
    s = torch.empty_like(m)
    tv = torch.empty(b * r, nchunk, k, device=dev, dtype=torch.float32)
    ti = torch.empty(b * r, nchunk, k, device=dev, dtype=torch.int32)
    _chunk_kernel[(b * r, nchunk)](x, m, s, tv, ti, v, x.stride(0), nchunk, K=k, CHUNK=chunk, num_warps=4)
    scores = torch.empty(b, k, device=dev, dtype=torch.float32)
    tokens = torch.empty(b, k, device=dev, dtype=torch.int64)
    parents = torch.empty(b, k, device=dev, dtype=torch.int64)
    c_block = triton.next_power_of_2(nchunk)
    _select_kernel[(b,)](
        m, s, tv, ti, parent_scores if parent_scores is not None else scores, vocab if vocab is not None else ti,
        scores, tokens, parents, r, nchunk, HAS_PARENT=parent_scores is not None, HAS_VOCAB=vocab is not None,
        K=k, R_BLOCK=triton.next_power_of_2(r), C_BLOCK=c_block, W_BLOCK=triton.next_power_of_2(nchunk * k),
        num_warps=4,
    )  # fmt: skip
    return scores, tokens, parents
