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
from gorgon.spec.tree import StaticTree, Tree, tree_mask
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

    def prefill(self, tokens, next_tokens, positions, kv_len, hidden) -> None:
        self.layer(self.target, hidden, next_tokens, positions, self.cache, kv_len=kv_len)

    def start(self, root, last, last_hidden, kv_len) -> None:
        pred = self.layer(
            self.target, last_hidden[:, None], root[:, None], last[:, None], self.cache, kv_len=kv_len
        )
        self.root_feature[: root.shape[0]].copy_(pred[:, 0])

    def _log_probs(self, features: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.target.logits(features).float(), dim=-1)

    def propose(self, state: SpecState) -> Tree:
        k, depth, n = self.config.top_k, self.config.depth, self.config.total_tokens
        committed, b, dev = state.committed, state.root.shape[0], state.root.device
        rows = torch.arange(b, device=dev)
        scores, tokens = self._log_probs(self.root_feature[:b]).topk(k, dim=-1)  # depth 1
        pool_tokens, pool_scores = [state.root[:, None], tokens], [torch.zeros(b, 1, device=dev), scores]
        pool_parents = [torch.zeros(b, 1 + k, dtype=torch.int64, device=dev)]  # the root, then depth 1
        pool_depths = [
            torch.zeros(1, dtype=torch.int64, device=dev),
            torch.ones(k, dtype=torch.int64, device=dev),
        ]
        # the ancestor relation over the pool, grown with it (node 0: the root, its pair at committed - 1)
        # (assignments through index tensors take tensor values: a Python scalar would be a host copy,
        # which a CUDA graph capture refuses)
        anc = torch.zeros(b, self.pool, self.pool, dtype=torch.bool, device=dev)
        anc[:, : 1 + k, 0] = True
        eye = torch.eye(self.pool, dtype=torch.bool, device=dev)
        anc[:, : 1 + k] |= eye[: 1 + k]
        frontier = 1 + torch.arange(k, device=dev).expand(b, k)  # pool indices
        feature_in = self.root_feature[:b, None, :].expand(b, k, -1)
        for d in range(1, depth):
            mask = tree_mask(anc, committed - 1, state.kv_len)[rows[:, None], frontier]  # [B, k, kv_len]
            positions = (committed + d - 1)[:, None].expand(b, k)
            slots = committed[:, None] - 1 + frontier
            pred = self.layer(self.target, feature_in, tokens, positions, self.cache, slots=slots, mask=mask)
            child_scores, child_tokens = self._log_probs(pred).topk(k, dim=-1)  # [B, k, k]
            cumulative = (scores[:, :, None] + child_scores).reshape(b, k * k)
            scores, best = cumulative.topk(k, dim=-1)
            parent_local = best // k
            tokens = child_tokens.reshape(b, k * k).gather(1, best)
            parents = frontier.gather(1, parent_local)
            feature_in = pred.gather(1, parent_local[:, :, None].expand(-1, -1, pred.shape[-1]))
            new = 1 + d * k + torch.arange(k, device=dev)
            anc[:, new] = anc[rows[:, None], parents] | eye[new]
            frontier = new.expand(b, k)
            pool_tokens.append(tokens)
            pool_scores.append(scores)
            pool_parents.append(parents)
            pool_depths.append(torch.full((k,), d + 1, dtype=torch.int64, device=dev))
        all_tokens = torch.cat(pool_tokens, dim=1)
        all_parents = torch.cat(pool_parents, dim=1)
        all_depths = torch.cat(pool_depths)
        all_scores = torch.cat(pool_scores, dim=1) - 1e-6 * all_depths  # ties: ancestors first
        # the n best drafted nodes (an ancestor always scores higher than its descendants), then put in
        # depth order so that parents precede children
        chosen = all_scores[:, 1:].topk(n, dim=-1).indices + 1
        order = (all_depths[chosen] * self.pool + chosen).argsort(dim=-1)
        chosen = torch.cat([torch.zeros(b, 1, dtype=torch.int64, device=dev), chosen.gather(1, order)], dim=1)
        position = torch.zeros(b, self.pool, dtype=torch.int64, device=dev)
        position.scatter_(1, chosen, torch.arange(n + 1, device=dev).expand(b, -1))
        tree_parents = position.gather(1, all_parents.gather(1, chosen))
        valid = torch.ones(b, n + 1, dtype=torch.bool, device=dev)
        return Tree(all_tokens.gather(1, chosen), tree_parents, all_depths[chosen], valid, depth, k)

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
