"""EAGLE drafting with EAGLE-2's dynamic tree.

The draft layer keeps its own KV cache of (feature, next token) pairs, in step with the target: after
each verification it reads the target's features of the root and the accepted path. Drafting grows a
pool level by level: the top_k children of the root, then, `depth - 1` times, the top_k of the
children of the current frontier by cumulative log-probability, each level one forward of the layer
over the frontier (tree attention over the pool). The `total_tokens` best nodes of the pool by
cumulative log-probability form the tree; a new shape every step, of a fixed size.
"""

from __future__ import annotations

import torch

from gorgon.heads.eagle import EagleConfig, EagleLayer
from gorgon.model.llama import ForwardOutput, Llama
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.tree import StaticTree, Tree
from gorgon.spec.verify import Acceptance


class EagleDrafter(Drafter):
    row_state = ("cache", "root_feature")

    def __init__(self, target: Llama, layer: EagleLayer, config: EagleConfig):
        self.target, self.layer, self.config = target, layer, config
        k, depth = config.top_k, config.depth
        self.pool = 1 + depth * k
        if not 1 <= config.total_tokens <= self.pool - 1:
            raise ValueError(f"total_tokens must be in [1, {self.pool - 1}] for top_k={k}, depth={depth}")
        self.shape = StaticTree.chains(1, depth)  # bounds only: the real shape changes every step
        self._vocab = self._vocab_head = None
        if len(config.draft_vocab) >= k:  # (fewer tokens than top_k could not fill a level)
            weight = target.lm_head.weight
            self._vocab = torch.tensor(config.draft_vocab, dtype=torch.int64, device=weight.device)
            self._vocab_head = weight[self._vocab].contiguous()

    @property
    def tree_size(self) -> int:
        return self.config.total_tokens + 1

    @property
    def scratch_slots(self) -> int:
        return max(self.tree_size, self.pool + 1)

    def networks(self) -> list[torch.nn.Module]:
        return [self.layer]

    def bind(self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(batch, capacity, device, dtype)
        self.cache = self.layer.new_cache(batch, capacity, device, dtype)
        self.root_feature = torch.zeros(batch, self.config.hidden_size, device=device, dtype=dtype)
        # constants of the pool's layout (the root, then `depth` levels of top_k nodes)
        k, pool = self.config.top_k, self.pool
        self._index = torch.arange(pool, device=device)
        depths = torch.cat([torch.zeros(1, dtype=torch.int64), torch.arange(pool - 1) // k + 1])
        self._depths = depths.to(device)
        self._tie_break = 1e-6 * self._depths
        self._zero = torch.zeros(batch, 1, device=device)
        self._root_parents = torch.zeros(batch, 1 + k, dtype=torch.int64, device=device)
        self._valid = torch.ones(batch, self.config.total_tokens + 1, dtype=torch.bool, device=device)

    def prefill(self, tokens, next_tokens, positions, kv_len, hidden) -> None:
        self.layer(self.target, hidden, next_tokens, positions, self.cache, kv_len=kv_len)

    def start(self, root, last, last_hidden, kv_len) -> None:
        pred = self.layer(
            self.target, last_hidden[:, None], root[:, None], last[:, None], self.cache, kv_len=kv_len
        )
        self.root_feature[: root.shape[0]].copy_(pred[:, 0])

    def _top(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best next tokens of each feature and their log-probabilities (over the draft vocabulary
        when the heads have one: a [V', H] slice of the LM head instead of all of it)."""
        if self._vocab is None:
            logits = self.target.logits(features)
        else:
            logits = torch.nn.functional.linear(features, self._vocab_head)
        scores, index = _topk(torch.log_softmax(logits, dim=-1, dtype=torch.float32), k)
        return scores, (index if self._vocab is None else self._vocab[index])

    def propose(self, state: SpecState) -> Tree:
        # Every op here is a kernel replayed each step: on a small target, drafting's cost is their count.
        # So the attention rows of pool nodes are grown incrementally (a child's row is its parent's
        # plus its own slot) instead of rebuilding a mask each level, and the pool's ancestor relation
        # is read off those rows once at the end (the verify step needs it, and need not derive it).
        k, depth, n, pool = self.config.top_k, self.config.depth, self.config.total_tokens, self.pool
        committed, b, dev = state.committed, state.root.shape[0], state.root.device
        base = (
            committed - 1
        )  # the root's pair sits at this slot of the layer's cache, pool node j at base + j
        # rows span the attended slots plus `pool` more: the last level's slots (never written, as it is
        # not forwarded) can lie past kv_len, yet its nodes' ancestor rows must include themselves
        kv = state.kv_len
        rel = torch.arange(kv + pool, device=dev)[None, :] - base[:, None]  # [B, kv_len + pool]
        own = rel[:, None, :] == self._index[:, None]  # [B, pool, kv_len]: pool node j's own slot
        root_row = (rel < 0)[:, None, :] | own[:, :1]  # the root sees the committed pairs and itself
        level_rows = root_row | own[:, 1 : 1 + k]
        rows = [root_row, level_rows]
        slots = base[:, None] + self._index[None, :]  # [B, pool]
        positions = base[:, None] + self._index[None, 1 : depth + 1]  # [B, depth]: position of depth d
        scores, tokens = self._top(self.root_feature[:b], k)  # depth 1
        pool_tokens, pool_scores, pool_parents = [state.root[:, None], tokens], [self._zero[:b], scores], []
        feature_in = self.root_feature[:b, None, :].expand(b, k, -1)
        for d in range(1, depth):
            lo = 1 + (d - 1) * k  # the frontier (depth d) is pool nodes lo .. lo + k - 1
            pred = self.layer(
                self.target, feature_in, tokens, positions[:, d - 1 : d].expand(b, k), self.cache,
                slots=slots[:, lo : lo + k], mask=level_rows[:, :, :kv],
            )  # fmt: skip
            child_scores, child_tokens = self._top(pred, k)  # [B, k, k]
            scores, best = (scores[:, :, None] + child_scores).reshape(b, k * k).topk(k, dim=-1)
            parent_local = best // k
            tokens = child_tokens.reshape(b, k * k).gather(1, best)
            feature_in = pred.gather(1, parent_local[:, :, None].expand(-1, -1, pred.shape[-1]))
            level_rows = level_rows.gather(1, parent_local[:, :, None].expand(-1, -1, rel.shape[1]))
            level_rows = level_rows | own[:, lo + k : lo + 2 * k]
            rows.append(level_rows)
            pool_tokens.append(tokens)
            pool_scores.append(scores)
            pool_parents.append(parent_local + lo)
        all_tokens = torch.cat(pool_tokens, dim=1)
        all_parents = torch.cat([self._root_parents[:b], *pool_parents], dim=1)
        all_scores = torch.cat(pool_scores, dim=1) - self._tie_break  # ties: ancestors first
        # the n best drafted nodes (an ancestor always scores higher than its descendants), then put in
        # depth order so that parents precede children
        chosen = all_scores[:, 1:].topk(n, dim=-1).indices + 1
        order = (self._depths[chosen] * pool + chosen).argsort(dim=-1)
        chosen = torch.cat([self._root_parents[:b, :1], chosen.gather(1, order)], dim=1)
        position = torch.zeros(b, pool, dtype=torch.int64, device=dev)
        position.scatter_(1, chosen, self._index[None, : n + 1].expand(b, -1))
        tree_parents = position.gather(1, all_parents.gather(1, chosen))
        # anc[b, i, j]: pool node i sees pool node j's slot; restricted to the chosen nodes
        # (clamped: a finished row, still stepping with the batch, may sit past this step's kv_len)
        seen = slots.clamp(max=kv + pool - 1)[:, None, :].expand(b, pool, pool)
        anc = torch.cat(rows, dim=1).gather(2, seen)
        anc = anc.gather(1, chosen[:, :, None].expand(b, n + 1, pool))
        anc = anc.gather(2, chosen[:, None, :].expand(b, n + 1, n + 1))
        return Tree(
            all_tokens.gather(1, chosen), tree_parents, self._depths[chosen], self._valid[:b], depth, k,
            ancestors=anc,
        )  # fmt: skip

    def update(self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput) -> None:
        b, d = accepted.path.shape[0], self.config.depth
        rows = torch.arange(b, device=accepted.path.device)
        nodes = torch.cat(
            [torch.zeros_like(accepted.path[:, :1]), accepted.path], dim=1
        )  # root, then the path
        features = target.hidden[rows[:, None], nodes]
        positions = state.committed[:, None] + torch.arange(d + 1, device=nodes.device)[None, :]
        pred = self.layer(
            self.target, features, accepted.emitted(tree), positions, self.cache, kv_len=state.kv_len
        )
        self.root_feature[:b].copy_(pred[rows, accepted.n_accepted])


TOPK_CHUNK = 256


def _topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """topk over the last dimension in two stages when it is long: the top k of each chunk of 256, then
    the top k of those. The same values (ties aside) as torch.topk, which selects by radix passes over
    the whole row, the costliest kernel of a drafting level (~30 us per call for 8192 columns on an H100;
    rows of 256 take one short block each)."""
    width = x.shape[-1]
    if width < 8 * TOPK_CHUNK or width % TOPK_CHUNK or k > TOPK_CHUNK:
        return x.topk(k, dim=-1)
    chunks = width // TOPK_CHUNK
    part_scores, part_index = x.unflatten(-1, (chunks, TOPK_CHUNK)).topk(k, dim=-1)  # [..., chunks, k]
    scores, pick = part_scores.flatten(-2).topk(k, dim=-1)
    offsets = torch.arange(0, width, TOPK_CHUNK, device=x.device)[:, None]
    return scores, (part_index + offsets).flatten(-2).gather(-1, pick)
