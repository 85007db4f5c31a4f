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
from gorgon.kernels import TreeMask, pack_ancestors
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
        self.path_depth = depth  # the longest accepted path `update` reads
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

    def accept_paths(self, depth: int) -> None:
        self.path_depth = max(self.config.depth, depth)

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
        # which pool nodes each node sees (its ancestors and itself), as bool rows over the pool and packed
        # (TreeMask.bits): the rows of the root and of the first level; later levels carry their parents'
        own = torch.eye(pool, dtype=torch.bool, device=device)
        first = torch.cat([own[:1], own[:1] | own[1 : 1 + k]])[None].expand(batch, -1, -1)
        self._first_rows = first.contiguous()
        self._first_bits = pack_ancestors(self._first_rows)
        # update: the root and the accepted path, a chain (causal) tree at the committed slots
        d = self.path_depth
        chain = torch.ones(d + 1, d + 1, dtype=torch.bool, device=device).tril()[None].expand(batch, -1, -1)
        self._chain = chain.contiguous()
        self._chain_bits = pack_ancestors(self._chain)
        self._steps = torch.arange(d + 1, device=device)

    def prefill(self, tokens, next_tokens, positions, kv_len, hidden) -> None:
        self.layer(self.target, hidden, next_tokens, positions, self.cache, kv_len=kv_len)

    def start(self, root, last, last_hidden, kv_len) -> None:
        pred = self.layer(
            self.target, last_hidden[:, None], root[:, None], last[:, None], self.cache, kv_len=kv_len
        )
        self.root_feature[: root.shape[0]].copy_(pred[:, 0])

    def _expand(
        self, features: torch.Tensor, parent_scores: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The top_k best children of the nodes whose predicted features are [B, R, H], scored by
        cumulative log-probability: (scores, tokens, parents in 0..R-1), each [B, top_k]. Over the draft
        vocabulary when the heads have one: a [V', H] slice of the LM head instead of all of it."""
        if self._vocab is None:
            logits = self.target.logits(features)
        else:
            logits = torch.nn.functional.linear(features, self._vocab_head)
        return self.ops.draft_expand(logits, parent_scores, self.config.top_k, self._vocab)

    def propose(self, state: SpecState) -> Tree:
        # Every op here is a kernel replayed each step: on a small target, drafting's cost is their count.
        # So each level's nodes carry their ancestor rows (bool, and packed for the tree-attention kernel)
        # from their parents instead of rebuilding a mask, and the pool's ancestor relation is those rows
        # (the verify step needs it, and need not derive it).
        k, depth, n, pool = self.config.top_k, self.config.depth, self.config.total_tokens, self.pool
        committed, b = state.committed, state.root.shape[0]
        # the root's pair sits at slot `base` of the layer's cache, pool node j at base + j
        base = committed - 1
        slots = base[:, None] + self._index[None, :]  # [B, pool]
        positions = base[:, None] + self._index[None, 1 : depth + 1]  # [B, depth]: position of depth d
        scores, tokens, _ = self._expand(self.root_feature[:b, None], None)  # depth 1
        pool_tokens, pool_scores, pool_parents = [state.root[:, None], tokens], [self._zero[:b], scores], []
        rows, bits = [self._first_rows[:b]], [self._first_bits[:b]]
        level_rows, level_bits = self._first_rows[:b, 1:], self._first_bits[:b, 1:]
        # each level reads its parents' predicted features: the root's (broadcast), then pred rows picked by
        # parent_local, a gather the layer's input kernel does (feature_index)
        features, index = self.root_feature[:b, None, :].expand(b, k, -1), None
        for d in range(1, depth):
            lo = 1 + (d - 1) * k  # the frontier (depth d) is pool nodes lo .. lo + k - 1
            pred = self.layer(
                self.target, features, tokens, positions[:, d - 1 : d].expand(b, k), self.cache,
                slots=slots[:, lo : lo + k], kv_len=state.kv_len, tree=TreeMask(base, level_rows, level_bits),
                feature_index=index,
            )  # fmt: skip
            scores, tokens, parent_local = self._expand(pred, scores)
            features, index = pred, parent_local
            # the new level's rows: its parents' and its own column (one kernel on GPUs)
            level_rows, level_bits = self.ops.carry_ancestors(level_rows, level_bits, parent_local, lo + k)
            rows.append(level_rows)
            bits.append(level_bits)
            pool_tokens.append(tokens)
            pool_scores.append(scores)
            pool_parents.append(parent_local + lo)
        all_tokens = torch.cat(pool_tokens, dim=1)
        all_parents = torch.cat([self._root_parents[:b], *pool_parents], dim=1)
        anc = torch.cat(rows, dim=1)  # [B, pool, pool]: pool node i sees pool node j
        if n == pool - 1:  # every drafted node is kept, and the pool is already in depth order
            depths = self._depths[None, :].expand(b, -1)
            packed = torch.cat(bits, dim=1)
            return Tree(
                all_tokens, all_parents, depths, self._valid[:b], depth, k, ancestors=anc, bits=packed
            )
        all_scores = torch.cat(pool_scores, dim=1) - self._tie_break  # ties: ancestors first
        # the n best drafted nodes (an ancestor always scores higher than its descendants), then put in
        # depth order so that parents precede children
        chosen = all_scores[:, 1:].topk(n, dim=-1).indices + 1
        order = (self._depths[chosen] * pool + chosen).argsort(dim=-1)
        chosen = torch.cat([self._root_parents[:b, :1], chosen.gather(1, order)], dim=1)
        position = torch.zeros(b, pool, dtype=torch.int64, device=committed.device)
        position.scatter_(1, chosen, self._index[None, : n + 1].expand(b, -1))
        tree_parents = position.gather(1, all_parents.gather(1, chosen))
        anc = anc.gather(1, chosen[:, :, None].expand(b, n + 1, pool))
        anc = anc.gather(2, chosen[:, None, :].expand(b, n + 1, n + 1))
        return Tree(
            all_tokens.gather(1, chosen), tree_parents, self._depths[chosen], self._valid[:b], depth, k,
            ancestors=anc,
        )  # fmt: skip

    def update(self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput) -> None:
        b = accepted.path.shape[0]
        nodes = torch.cat([self._root_parents[:b, :1], accepted.path], dim=1)  # the root, then the path
        positions = state.committed[:, None] + self._steps[None, :]
        chain = TreeMask(state.committed, self._chain[:b], self._chain_bits[:b])
        pred = self.layer(
            self.target, target.hidden, accepted.emitted(tree), positions, self.cache, kv_len=state.kv_len,
            tree=chain, feature_index=nodes,
        )  # fmt: skip
        last = accepted.n_accepted[:, None, None].expand(-1, 1, pred.shape[-1])
        self.root_feature[:b].copy_(pred.gather(1, last)[:, 0])
