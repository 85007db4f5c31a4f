"""Triton kernels for the end of a speculative step: greedy acceptance, then the step's bookkeeping.

What follows the target's verify forward is dozens of tiny PyTorch ops (gathers, compares, reductions,
scatters), each a kernel of ~2-3 us inside the step's CUDA graph at batch 1. Here each group is one
program per batch row: `accept_greedy` (about 18 kernels in the reference) and `commit_step` (about 18
more). Signatures and results match `gorgon.kernels.reference` exactly (integers only).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _accept_greedy_kernel(PRED, TOK, PAR, DEP, VALID, ANC, PATH, NACC, LAST, BONUS, EMIT, N, D,
                          s_pred, s_tok, s_par, s_dep, s_valid, s_anc_b, s_anc_i, s_anc_j,
                          BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_E: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    i = tl.arange(0, BLOCK_N)
    inside = i < N
    tok = tl.load(TOK + b * s_tok + i, mask=inside, other=-1)
    par = tl.load(PAR + b * s_par + i, mask=inside, other=0)
    dep = tl.load(DEP + b * s_dep + i, mask=inside, other=0)
    valid = tl.load(VALID + b * s_valid + i, mask=inside, other=0) != 0
    pred_at_parent = tl.load(PRED + b * s_pred + par, mask=inside, other=-2)
    ok = ((tok == pred_at_parent) & valid) | (i == 0)
    # anc[i, j]: node j is node i or one of its ancestors. A node is accepted when none of them fails.
    both = inside[:, None] & inside[None, :]
    anc = tl.load(ANC + b * s_anc_b + i[:, None] * s_anc_i + i[None, :] * s_anc_j, mask=both, other=0) != 0
    fails = tl.max((anc & (ok == 0)[None, :]).to(tl.int32), axis=1)
    accepted = (fails == 0) & inside
    # deepest first, then the smallest index: one integer score, as the reference ranks them
    score = tl.where(accepted, dep * BLOCK_N + (BLOCK_N - 1 - i), -1)
    best = tl.max(score, axis=0)
    last = BLOCK_N - 1 - best % BLOCK_N
    # the path: on last's row of anc, the first node at each depth 1..D (0 where there is none)
    on_path = tl.max(tl.where(i[:, None] == last, anc.to(tl.int32), 0), axis=0) != 0
    d = tl.arange(0, BLOCK_D)
    at_level = on_path[None, :] & (dep[None, :] == (d + 1)[:, None])
    first = tl.min(tl.where(at_level, i[None, :], BLOCK_N), axis=1)
    path = tl.where(first == BLOCK_N, 0, first)
    tl.store(PATH + b * D + d, path.to(tl.int64), mask=d < D)
    n_acc = best // BLOCK_N
    bonus = tl.load(PRED + b * s_pred + last).to(tl.int64)
    tl.store(NACC + b, n_acc.to(tl.int64))
    tl.store(LAST + b, last.to(tl.int64))
    tl.store(BONUS + b, bonus)
    # emitted[e], e = 0..D: the path's tokens (the root's past its end, path 0), the bonus at n_accepted
    e = tl.arange(0, BLOCK_E)
    node_e = tl.max(tl.where(d[None, :] == e[:, None], path[None, :], 0), axis=1)  # path[e], 0 at e >= D
    emit = tl.load(TOK + b * s_tok + node_e, mask=e <= D, other=0).to(tl.int64)
    emit = tl.where(e == n_acc, bonus, emit)
    tl.store(EMIT + b * (D + 1) + e, emit, mask=e <= D)


def accept_greedy(
    pred: torch.Tensor, tokens: torch.Tensor, parents: torch.Tensor, depths: torch.Tensor,
    valid: torch.Tensor, ancestors: torch.Tensor, max_depth: int,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """The reference's accept_greedy as one kernel. Inputs may be broadcast views (stride 0 over the
    batch, as drafters' static tree shapes are); bool tensors are read as they are, no conversion."""
    b, n = tokens.shape
    assert n <= 128, "one program holds the whole [N, N] ancestor block"
    assert all(t.stride(1) == 1 for t in (pred, tokens, parents, depths, valid))
    dev = tokens.device
    path = torch.empty(b, max_depth, dtype=torch.int64, device=dev)
    n_accepted, last, bonus = (torch.empty(b, dtype=torch.int64, device=dev) for _ in range(3))
    emitted = torch.empty(b, max_depth + 1, dtype=torch.int64, device=dev)
    _accept_greedy_kernel[(b,)](
        pred, tokens, parents, depths, valid, ancestors, path, n_accepted, last, bonus, emitted, n, max_depth,
        pred.stride(0), tokens.stride(0), parents.stride(0), depths.stride(0), valid.stride(0),
        ancestors.stride(0), ancestors.stride(1), ancestors.stride(2),
        BLOCK_N=max(16, triton.next_power_of_2(n)), BLOCK_D=max(2, triton.next_power_of_2(max_depth)),
        BLOCK_E=max(2, triton.next_power_of_2(max_depth + 1)), num_warps=4,
    )  # fmt: skip
    return path, n_accepted, last, bonus, emitted


@triton.jit
def _commit_step_kernel(TOK, DEP, VALID, PATH, NACC, BONUS, HIST, SPEC_OUT, ROOT, POS, N, D, WIDTH, limit,
                        s_tok, s_dep, s_valid, s_path, s_hist, s_out, s_root, s_pos,
                        BLOCK_N: tl.constexpr, BLOCK_E: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    committed = tl.load(POS + b * s_pos)  # read before this program overwrites it, below
    n_acc = tl.load(NACC + b)
    bonus = tl.load(BONUS + b)
    # emitted[j], j = 0..D: the path's tokens (the root's past its end), the bonus at n_accepted
    j = tl.arange(0, BLOCK_E)
    in_e = j <= D
    node = tl.load(PATH + b * s_path + j, mask=j < D, other=0)
    emitted = tl.where(j == n_acc, bonus, tl.load(TOK + b * s_tok + node, mask=in_e, other=0))
    # history: one writer per column; columns past the last land on it, written by the bonus alone
    col = committed + 1 + j
    write = in_e & (j <= n_acc) & ((col < WIDTH - 1) | (j == n_acc))
    tl.store(HIST + b * s_hist + tl.minimum(col, WIDTH - 1), emitted, mask=write)
    i = tl.arange(0, BLOCK_N)
    dep = tl.load(DEP + b * s_dep + i, mask=i < N, other=0)
    valid = tl.load(VALID + b * s_valid + i, mask=i < N, other=0) != 0
    proposed = tl.max(tl.where(valid, dep, 0), axis=0)
    tl.store(SPEC_OUT + b * s_out, n_acc + 1)
    tl.store(SPEC_OUT + b * s_out + 1, proposed.to(tl.int64))
    tl.store(SPEC_OUT + b * s_out + 2 + j, emitted, mask=in_e)
    tl.store(ROOT + b * s_root, bonus)
    tl.store(POS + b * s_pos, tl.minimum(committed + 1 + n_acc, limit))


def commit_step(
    tree_tokens: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor, path: torch.Tensor,
    n_accepted: torch.Tensor, bonus: torch.Tensor, history: torch.Tensor, spec_out: torch.Tensor,
    tokens: torch.Tensor, positions: torch.Tensor, limit: int,
) -> None:  # fmt: skip
    """The reference's commit_step as one kernel (a program per row reads its row's position before
    writing it, so positions may be where committed came from)."""
    b, n = tree_tokens.shape
    d = path.shape[1]
    rows = (tree_tokens, depths, valid, path, history, spec_out, n_accepted, bonus)
    assert all(t.stride(-1) == 1 for t in rows)
    _commit_step_kernel[(b,)](
        tree_tokens, depths, valid, path, n_accepted, bonus, history, spec_out, tokens, positions, n, d,
        history.shape[1], limit, tree_tokens.stride(0), depths.stride(0), valid.stride(0), path.stride(0),
        history.stride(0), spec_out.stride(0), tokens.stride(0), positions.stride(0),
        BLOCK_N=max(16, triton.next_power_of_2(n)), BLOCK_E=max(2, triton.next_power_of_2(d + 1)),
        num_warps=1,
    )  # fmt: skip


@triton.jit
def _match_start(row, committed, S, N_MIN: tl.constexpr, N_MAX: tl.constexpr, BLOCK: tl.constexpr):
    """Where the best match's continuation starts in one row (0: no match), ranked as the reference's
    lookup_scores: candidate match ends e in 0..committed-1, a block at a time; the match length at e
    counts how many tokens back from e agree with the ones back from the root (history[committed])."""
    best = tl.full((BLOCK,), -1, tl.int64)
    for lo in range(0, committed, BLOCK):
        e = lo + tl.arange(0, BLOCK).to(tl.int64)
        run = e < committed
        length = tl.zeros((BLOCK,), tl.int64)
        for t in tl.static_range(N_MAX):
            # the root's t-th predecessor; none (-2 matches nothing) before the row's start
            mine = tl.where(committed >= t, tl.load(row + tl.maximum(committed - t, 0)), -2)
            back = e - t
            tok = tl.load(row + tl.maximum(back, 0), mask=run & (back >= 0), other=-1)
            run = run & (back >= 0) & (tok == mine)
            length += run.to(tl.int64)
        best = tl.maximum(best, tl.where(length >= N_MIN, length * S + e, -1))
    top = tl.max(best, axis=0)
    return tl.where(top >= 0, top % S + 1, 0)


@triton.jit
def _lookup_chain_kernel(HIST, COMMITTED, CHAIN, OK, S, s_hist, s_com, K: tl.constexpr, N_MIN: tl.constexpr,
                         N_MAX: tl.constexpr, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    row = HIST + b * s_hist
    committed = tl.load(COMMITTED + b * s_com)
    start = _match_start(row, committed, S, N_MIN, N_MAX, BLOCK)
    j = tl.arange(0, BLOCK_K)
    idx = start + j
    ok = (idx > j) & (idx <= committed) & (j < K)  # idx > j: start > 0, a match was found
    chain = tl.load(row + tl.minimum(idx, S - 1), mask=ok, other=0)
    tl.store(CHAIN + b * K + j, chain, mask=j < K)
    tl.store(OK + b * K + j, ok.to(tl.int8), mask=j < K)


def lookup_chain(
    history: torch.Tensor, committed: torch.Tensor, k: int, n_min: int, n_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's lookup_chain (prompt lookup, one chain per row) as one kernel: a program per row
    scans only that row's committed tokens."""
    b, s = history.shape
    assert history.stride(1) == 1
    chain = torch.empty(b, k, dtype=torch.int64, device=history.device)
    ok = torch.empty(b, k, dtype=torch.bool, device=history.device)
    _lookup_chain_kernel[(b,)](
        history, committed, chain, ok.view(torch.int8), s, history.stride(0), committed.stride(0),
        K=k, N_MIN=n_min, N_MAX=n_max, BLOCK=1024, BLOCK_K=max(2, triton.next_power_of_2(k)), num_warps=4,
    )  # fmt: skip
    return chain, ok


@triton.jit
def _lookup_extend_kernel(TOK, PAR, DEP, VALID, ANC, BITS, HIST, COMMITTED,
                          O_TOK, O_PAR, O_DEP, O_VALID, O_ANC, O_BITS, N, S,
                          s_tok, s_par, s_dep, s_valid, s_anc_b, s_anc_i, s_anc_j, s_bits_b, s_bits_i,
                          s_hist, s_com, W0,
                          K: tl.constexpr, N_MIN: tl.constexpr, N_MAX: tl.constexpr, BLOCK: tl.constexpr,
                          BLOCK_T: tl.constexpr, W1: tl.constexpr, HAS_BITS: tl.constexpr):  # fmt: skip
    b = tl.program_id(0)
    T = N + K
    # the lookup (as _lookup_chain_kernel), then the k tokens after the match
    row = HIST + b * s_hist
    committed = tl.load(COMMITTED + b * s_com)
    start = _match_start(row, committed, S, N_MIN, N_MAX, BLOCK)
    # per node i of the extended tree: the base tree's row for i < N, the chain's (c = i - N) after it
    i = tl.arange(0, BLOCK_T)
    base = i < N
    chain = (i >= N) & (i < T)
    c = (i - N).to(tl.int64)
    idx = start + c
    ok = chain & (idx > c) & (idx <= committed)  # idx > c: a match was found (start > 0)
    ctok = tl.load(row + tl.minimum(tl.maximum(idx, 0), S - 1), mask=ok, other=0)
    tok = tl.where(base, tl.load(TOK + b * s_tok + i, mask=base, other=0), ctok)
    par = tl.where(base, tl.load(PAR + b * s_par + i, mask=base, other=0), tl.where(c == 0, 0, i - 1))
    dep = tl.where(base, tl.load(DEP + b * s_dep + i, mask=base, other=0), c + 1)
    val = tl.where(base, tl.load(VALID + b * s_valid + i, mask=base, other=0) != 0, ok)
    inside = i < T
    tl.store(O_TOK + b * T + i, tok.to(tl.int64), mask=inside)
    tl.store(O_PAR + b * T + i, par.to(tl.int64), mask=inside)
    tl.store(O_DEP + b * T + i, dep.to(tl.int64), mask=inside)
    tl.store(O_VALID + b * T + i, val.to(tl.int8), mask=inside)
    # ancestors: the base block, then the chain rows (the root and chain nodes up to themselves)
    j = tl.arange(0, BLOCK_T)
    in_base = base[:, None] & (j < N)[None, :]
    a = tl.load(ANC + b * s_anc_b + i[:, None] * s_anc_i + j[None, :] * s_anc_j, mask=in_base, other=0) != 0
    sees = (j[None, :] == 0) | ((j[None, :] >= N) & (j[None, :] <= i[:, None]))
    a = tl.where(chain[:, None], sees & (j < T)[None, :], a)
    tl.store(
        O_ANC + (b * T + i[:, None]) * T + j[None, :], a.to(tl.int8), mask=inside[:, None] & (j < T)[None, :]
    )
    if HAS_BITS:
        # packed rows: the base rows' words (zero past theirs), the chain rows packed here
        jj = tl.arange(0, 32)
        for w in tl.static_range(W1):
            col = w * 32 + jj
            chain_sees = (col[None, :] == 0) | ((col[None, :] >= N) & (col[None, :] <= i[:, None]))
            chain_sees = chain_sees & (col < T)[None, :]
            one = tl.full((32,), 1, tl.int64)
            packed = tl.sum(tl.where(chain_sees, (one << jj.to(tl.int64))[None, :], 0), axis=1)
            packed = tl.where(packed >= 2147483648, packed - 4294967296, packed)
            word = tl.load(BITS + b * s_bits_b + i * s_bits_i + w, mask=base & ((i * 0 + w) < W0), other=0)
            word = tl.where(chain, packed.to(tl.int32), word)
            tl.store(O_BITS + (b * T + i) * W1 + w, word, mask=inside)


def lookup_extend(
    tokens: torch.Tensor, parents: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor,
    ancestors: torch.Tensor, bits: torch.Tensor | None, history: torch.Tensor, committed: torch.Tensor,
    k: int, n_min: int, n_max: int,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """The reference's lookup_extend (a tree plus a prompt-lookup chain from its root) as one kernel: the
    lookup and the ~10 copies and concatenations that build the extended tree. Inputs may be broadcast
    views over the batch (static tree shapes)."""
    b, n = tokens.shape
    t = n + k
    assert t <= 128 and history.stride(1) == 1
    assert all(x.stride(1) == 1 for x in (tokens, parents, depths, valid))
    dev = tokens.device
    out = [torch.empty(b, t, dtype=torch.int64, device=dev) for _ in range(3)]
    o_valid = torch.empty(b, t, dtype=torch.bool, device=dev)
    o_anc = torch.empty(b, t, t, dtype=torch.bool, device=dev)
    w1 = -(-t // 32)
    o_bits = torch.empty(b, t, w1, dtype=torch.int32, device=dev) if bits is not None else None
    bits_in = bits if bits is not None else o_anc  # (never read without bits)
    _lookup_extend_kernel[(b,)](
        tokens, parents, depths, valid, ancestors, bits_in, history, committed,
        out[0], out[1], out[2], o_valid.view(torch.int8), o_anc.view(torch.int8),
        o_bits if o_bits is not None else o_anc, n, history.shape[1],
        tokens.stride(0), parents.stride(0), depths.stride(0), valid.stride(0),
        ancestors.stride(0), ancestors.stride(1), ancestors.stride(2),
        bits_in.stride(0), bits_in.stride(1), history.stride(0), committed.stride(0),
        bits.shape[2] if bits is not None else 0,
        K=k, N_MIN=n_min, N_MAX=n_max, BLOCK=1024, BLOCK_T=max(16, triton.next_power_of_2(t)), W1=w1,
        HAS_BITS=bits is not None, num_warps=4,
    )  # fmt: skip
    return out[0], out[1], out[2], o_valid, o_anc, o_bits
