"""The model's fused operations written in plain PyTorch: the definition of correct, and the CPU path.

Each function here has a Triton twin in `triton_ops` with the same signature; `gorgon.kernels.ops_for`
picks one set for a device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gorgon.kernels.attention import AttentionMeta, attention, pack_ancestors, write_kv


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm(h) * weight, h) where h = x + residual (or x when there is no residual).

    x, residual [..., H]; h is rounded to x's dtype before normalising, as an unfused model would.
    Returns the normalised tensor and the new residual stream h.
    """
    h = x if residual is None else x + residual
    hf = h.float()
    hf = hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * hf.to(x.dtype), h


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
    """Split qkv [B, T, (Hq + 2 Hkv) D], rotate q and k by their positions [B, T] (cos, sin tables
    [max_position, D/2]), store k and v in the cache rows [B, S, Hkv, D] at slots [B, T].
    Returns the rotated queries [B, T, Hq, D]."""
    b, t, _ = qkv.shape
    num_kv, d = cache_k.shape[2], cache_k.shape[3]
    q, k, v = qkv.split((num_heads * d, num_kv * d, num_kv * d), dim=-1)
    c, s = cos[positions], sin[positions]
    q = _rotate(q.view(b, t, num_heads, d), c, s)
    k = _rotate(k.view(b, t, num_kv, d), c, s)
    write_kv(cache_k, cache_v, k, v.view(b, t, num_kv, d), slots)
    return q


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def argmax(x: torch.Tensor) -> torch.Tensor:
    """Row-wise argmax of x [B, N] (the first index among equal maxima), int64 [B]."""
    return x.argmax(dim=-1)


def accept_greedy(
    pred: torch.Tensor, tokens: torch.Tensor, parents: torch.Tensor, depths: torch.Tensor,
    valid: torch.Tensor, ancestors: torch.Tensor, max_depth: int,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Greedy verification of a batch of trees given the target's argmax pred [B, N] at every node.

    A node passes when it is valid and its token is pred at its parent (the root always passes); the
    accepted nodes are those whose ancestors-or-self (ancestors [B, N, N] bool) all pass. Returns
    (path [B, max_depth]: the nodes from the root to the deepest accepted one, by depth, 0 past the end;
    n_accepted [B]: its depth; last [B]: that node, the smallest index among equal depths; bonus [B]:
    pred there; emitted [B, max_depth + 1]: emitted_tokens of these), all int64. tokens, parents,
    depths [B, N] int64, valid [B, N] bool.
    """
    ok = tokens == torch.gather(pred, 1, parents)
    last, path = accept_passing(ok, depths, valid, ancestors, max_depth)
    n_accepted = torch.gather(depths, 1, last[:, None])[:, 0]
    bonus = torch.gather(pred, 1, last[:, None])[:, 0]
    return path, n_accepted, last, bonus, emitted_tokens(tokens, path, n_accepted, bonus)


def accept_passing(
    ok: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor, ancestors: torch.Tensor, max_depth: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Given which nodes pass their own test (ok [B, N] bool), the deepest valid node whose whole path
    passes (last [B]) and that path ([B, max_depth], as in accept_greedy)."""
    ok = ok & valid
    ok[:, 0] = True
    accepted = ~(ancestors & ~ok[:, None, :]).any(-1)
    last = _deepest(accepted, depths)
    return last, _path_to(ancestors, depths, last, max_depth)


def _deepest(accepted: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """Index of the deepest accepted node per row, the smallest index among equals."""
    n = accepted.shape[1]
    score = depths * n + (n - 1 - torch.arange(n, device=depths.device))
    return torch.where(accepted, score, torch.full_like(score, -1)).argmax(-1)


def _path_to(anc: torch.Tensor, depths: torch.Tensor, last: torch.Tensor, max_depth: int) -> torch.Tensor:
    """Nodes on the way from the root to `last`, [B, max_depth], by depth (0 past the end)."""
    on_path = torch.gather(anc, 1, last[:, None, None].expand(-1, 1, anc.shape[2]))[:, 0]  # [B, N]
    levels = torch.arange(1, max_depth + 1, device=depths.device)
    at_level = on_path[:, None, :] & (depths[:, None, :] == levels[None, :, None])  # [B, D, N]
    return at_level.float().argmax(-1)


def emitted_tokens(
    tree_tokens: torch.Tensor, path: torch.Tensor, n_accepted: torch.Tensor, bonus: torch.Tensor
) -> torch.Tensor:
    """The tokens a step adds, [B, D + 1]: the accepted drafted tokens tree_tokens[path[:n_accepted]],
    then the bonus token. Past it: the tokens of the nodes path names there (0, the root, past the end),
    then the root's token."""
    out = torch.gather(tree_tokens, 1, F.pad(path, (0, 1)))
    return out.scatter(1, n_accepted[:, None], bonus[:, None])


def commit_step(
    tree_tokens: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor, path: torch.Tensor,
    n_accepted: torch.Tensor, bonus: torch.Tensor, history: torch.Tensor, spec_out: torch.Tensor,
    tokens: torch.Tensor, positions: torch.Tensor, limit: int,
) -> None:  # fmt: skip
    """The end of a speculative step, after verification (path [B, D], n_accepted, bonus [B]) of the
    trees (tree_tokens, depths, valid [B, N]), in place on the step's buffers:

    - history [B, W]: the emitted tokens (see emitted_tokens) at columns committed + 1 .. committed + 1 +
      n_accepted, where committed = positions[:, 0] before the step; columns past W - 1 land on W - 1,
      which then holds the bonus token (the newest of them); the other columns are left alone;
    - spec_out [B, >= D + 3], its first D + 3 columns: n_accepted + 1, the depth proposed (the deepest
      valid node's), the emitted tokens;
    - tokens [B, 1] = bonus; positions [B, 1] = min(committed + 1 + n_accepted, limit).
    """
    d = path.shape[1]
    committed = positions[:, 0]
    emitted = emitted_tokens(tree_tokens, path, n_accepted, bonus)
    j = torch.arange(d + 1, device=path.device)[None, :]
    last_col = history.shape[1] - 1
    cols = committed[:, None] + 1 + j
    old = torch.gather(history, 1, cols.clamp(max=last_col))
    new = torch.where(j <= n_accepted[:, None], emitted, old)
    # Every entry clamped onto the last column writes the same value, so the scatter's order is moot.
    reaches_end = (committed + 1 + n_accepted >= last_col)[:, None]
    new = torch.where(cols >= last_col, torch.where(reaches_end, bonus[:, None], old), new)
    history.scatter_(1, cols.clamp(max=last_col), new)
    proposed = (depths * valid).amax(dim=1)
    spec_out[:, : d + 3].copy_(torch.cat([(n_accepted + 1)[:, None], proposed[:, None], emitted], dim=1))
    tokens.copy_(bonus[:, None])
    positions.copy_((committed + 1 + n_accepted).clamp(max=limit)[:, None])


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up for gate_up [..., 2I] holding gate then up; returns [..., I]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def attend(q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, meta: AttentionMeta,
           scale: float) -> torch.Tensor:  # fmt: skip
    """Attention of q [B, T, Hq, D] over the first meta.kv_len slots of the cache rows, as meta allows."""
    n = meta.kv_len
    return attention(q, cache_k[:, :n], cache_v[:, :n], meta.dense_mask(), scale)


def keep_path(
    data: torch.Tensor, committed: torch.Tensor, path: torch.Tensor, n_accepted: torch.Tensor
) -> None:
    """Move accepted tree nodes' keys and values into place in the cache tensor data [2, L, B', S, H, D]
    (see KVCache.keep_path): one gather and one scatter over all layers at once."""
    b, d = path.shape
    if d == 0:
        return
    rows = torch.arange(b, device=path.device)[:, None].expand(b, d)
    dst = committed[:, None] + 1 + torch.arange(d, device=path.device)[None, :]
    keep = torch.arange(d, device=path.device)[None, :] < n_accepted[:, None]
    src = torch.where(keep, committed[:, None] + path, dst)  # past the path: copy a slot onto itself
    data[:, :, rows, dst] = data[:, :, rows, src]


def draft_expand(
    logits: torch.Tensor, parent_scores: torch.Tensor | None, k: int, vocab: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of a drafted tree: the k best children over R expanded nodes.

    logits [B, R, V] of each node's next token; parent_scores [B, R] the nodes' cumulative
    log-probabilities (None: zeros); vocab [V] maps column to token id (None: the identity).
    A child's score is its parent's plus its own log-probability. Returns (scores float32 [B, k],
    tokens int64 [B, k], parents int64 [B, k]: index in 0..R-1 of each child's node), best first.
    """
    b, r, _ = logits.shape
    child_scores, child_index = _topk(torch.log_softmax(logits, dim=-1, dtype=torch.float32), k)
    if parent_scores is not None:
        child_scores = child_scores + parent_scores[:, :, None]
    if r == 1:  # one node: its children are already the k best, in order
        scores, best = child_scores[:, 0], None
    else:
        scores, best = child_scores.reshape(b, r * k).topk(k, dim=-1)
    index = child_index[:, 0] if best is None else child_index.reshape(b, r * k).gather(1, best)
    parents = torch.zeros_like(index) if best is None else best // k
    return scores, (index if vocab is None else vocab[index]), parents


TOPK_CHUNK = 256


def _topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """topk over the last dimension in two stages when it is long: the top k of each chunk of 256, then
    the top k of those. The same values (ties aside) as torch.topk, which selects by radix passes over
    the whole row (~30 us per call for 8192 columns on an H100; rows of 256 take one short block each)."""
    width = x.shape[-1]
    if width < 8 * TOPK_CHUNK or width % TOPK_CHUNK or k > TOPK_CHUNK:
        return x.topk(k, dim=-1)
    chunks = width // TOPK_CHUNK
    part_scores, part_index = x.unflatten(-1, (chunks, TOPK_CHUNK)).topk(k, dim=-1)  # [..., chunks, k]
    scores, pick = part_scores.flatten(-2).topk(k, dim=-1)
    offsets = torch.arange(0, width, TOPK_CHUNK, device=x.device)[:, None]
    return scores, (part_index + offsets).flatten(-2).gather(-1, pick)


def lookup_scores(history: torch.Tensor, committed: torch.Tensor, n_min: int, n_max: int) -> torch.Tensor:
    """Prompt lookup's ranking of earlier matches: score [B, S] of a match ending at e, m(e) * S + e, where
    m(e) (up to n_max) is how many tokens back from e agree with the ones back from the root
    (history[committed]); -1 where m(e) < n_min or the continuation e + 1 would pass the root. The best
    scores are the longest matches, then the most recent. history [B, S] int64, committed [B]."""
    b, s = history.shape
    e = torch.arange(s, device=history.device)[None, :]  # candidate end of a match
    run = torch.ones(b, s, dtype=torch.bool, device=history.device)
    length = torch.zeros(b, s, dtype=torch.int64, device=history.device)
    for t in range(n_max):
        back = e - t
        mine = (committed[:, None] - t).clamp_min(0)
        same = (back >= 0) & (committed[:, None] - t >= 0)
        same &= history.gather(1, back.clamp_min(0).expand(b, -1)) == history.gather(1, mine)
        run &= same
        length += run.long()
    usable = (e <= committed[:, None] - 1) & (length >= n_min)
    return torch.where(usable, length * s + e, -1)


def lookup_chain(
    history: torch.Tensor, committed: torch.Tensor, k: int, n_min: int, n_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt lookup for one chain per row: the k tokens that followed the best earlier occurrence of the
    row's last n tokens (the root, history[committed], included), longest n in n_min..n_max first, then
    the most recent (lookup_scores). Returns (chain int64 [B, k], ok bool [B, k]): ok is False from the
    first token that does not exist yet (or everywhere when nothing matches)."""
    s = history.shape[1]
    best = lookup_scores(history, committed, n_min, n_max).max(dim=1).values
    found = best >= 0
    start = torch.where(found, best % s + 1, 0)
    idx = start[:, None] + torch.arange(k, device=history.device)[None, :]
    chain = history.gather(1, idx.clamp(max=s - 1))
    ok = found[:, None] & (idx <= committed[:, None])
    return torch.where(ok, chain, 0), ok


def lookup_extend(
    tokens: torch.Tensor, parents: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor,
    ancestors: torch.Tensor, bits: torch.Tensor | None, history: torch.Tensor, committed: torch.Tensor,
    k: int, n_min: int, n_max: int,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """A tree of N nodes ([B, N] tokens, parents, depths, valid; [B, N, N] ancestors; packed bits or None)
    plus lookup_chain's k tokens hung from the root as nodes N .. N + k - 1: the chain's node N + i sits
    at depth i + 1 under node N + i - 1 (the root for i = 0), valid where the chain's token exists, and
    sees the root and chain nodes N .. N + i. Returns the extended (tokens, parents, depths, valid,
    ancestors, bits), bits None when `bits` is None."""
    b, n = tokens.shape
    dev = tokens.device
    chain, ok = lookup_chain(history, committed, k, n_min, n_max)
    steps = torch.arange(k, device=dev)
    rows = torch.zeros(k, n + k, dtype=torch.bool, device=dev)
    rows[:, 0] = True
    rows[:, n:] = torch.ones(k, k, dtype=torch.bool, device=dev).tril()
    anc = torch.cat([F.pad(ancestors, (0, k)), rows.expand(b, -1, -1)], dim=1)
    packed = None if bits is None else pack_ancestors(anc)
    return (
        torch.cat([tokens, chain], dim=1),
        torch.cat([parents, torch.where(steps == 0, 0, n + steps - 1).expand(b, -1)], dim=1),
        torch.cat([depths, (steps + 1).expand(b, -1)], dim=1),
        torch.cat([valid, ok], dim=1),
        anc,
        packed,
    )


def embed_concat(
    tokens: torch.Tensor, weight: torch.Tensor, features: torch.Tensor, index: torch.Tensor | None = None
) -> torch.Tensor:
    """[embedding of each token, its feature row]: tokens [B, T] into weight [V, H]; features [B, R, H],
    row t taking features[b, index[b, t]] (index [B, T]; None: row t, R = T). Returns [B, T, 2H] in the
    features' dtype: the EAGLE layer's input, with the gather of parent features it needs while drafting."""
    rows = (
        features if index is None else features.gather(1, index[..., None].expand(-1, -1, features.shape[-1]))
    )
    return torch.cat([F.embedding(tokens, weight).to(features.dtype), rows], dim=-1)


def carry_ancestors(
    rows: torch.Tensor, bits: torch.Tensor, parent: torch.Tensor, first: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A drafting level's visibility rows from its parents': node i of the new level (pool index first + i)
    sees what its parent (row parent[b, i] of the previous level) sees, and itself. rows [B, R, P] bool
    and bits [B, R, W] int32 (the same packed) -> [B, K, P] and [B, K, W] for parent [B, K]."""
    k, p = parent.shape[1], rows.shape[2]
    # a comparison, not an indexed store of True: that copies a host scalar, which CUDA graph capture forbids
    own = (
        torch.arange(p, device=rows.device)[None, :] == (first + torch.arange(k, device=rows.device))[:, None]
    )
    pick = parent[:, :, None]
    new_rows = rows.gather(1, pick.expand(-1, -1, p)) | own
    new_bits = bits.gather(1, pick.expand(-1, -1, bits.shape[2])) | pack_ancestors(own)
    return new_rows, new_bits
