"""Medusa drafting: K heads on the target's last hidden state guess the next K tokens; a static tree of
top-k rank paths turns their guesses into candidates (node (r1, .., rd) takes head d's rank-rd guess)."""

from __future__ import annotations

import torch

from gorgon.heads.medusa import MedusaHeads
from gorgon.model.llama import ForwardOutput, Llama
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.tree import StaticTree, Tree
from gorgon.spec.verify import Acceptance


class MedusaDrafter(Drafter):
    row_state = ("last_hidden",)

    def __init__(self, target: Llama, heads: MedusaHeads, tree: StaticTree | None = None):
        self.target, self.heads = target, heads
        paths = tree.paths if tree else heads.config.tree
        self.shape = StaticTree(paths) if paths else StaticTree.chains(1, heads.config.num_heads)
        if self.shape.depth > heads.config.num_heads:
            raise ValueError(
                f"the tree is {self.shape.depth} deep but there are {heads.config.num_heads} heads"
            )
        self.max_rank = max(self.shape.ranks()) + 1

    def bind(self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(batch, capacity, device, dtype)
        self.last_hidden = torch.zeros(batch, self.heads.config.hidden_size, device=device, dtype=dtype)
        depths = torch.tensor(self.shape.depths()[1:], device=device)
        ranks = torch.tensor(self.shape.ranks()[1:], device=device)
        self._pick = (depths - 1) * self.max_rank + ranks  # node -> (head, rank) in the flat guesses

    def networks(self) -> list[torch.nn.Module]:
        return [self.heads]

    def start(self, root, last, last_hidden, kv_len) -> None:
        self.last_hidden[: root.shape[0]].copy_(last_hidden)

    def propose(self, state: SpecState) -> Tree:
        b = state.root.shape[0]
        logits = self.target.logits(self.heads(self.last_hidden[:b]))  # [B, K, V]
        guesses = logits.topk(self.max_rank, dim=-1).indices.reshape(b, -1)  # [B, K * R]
        tokens = torch.cat([state.root[:, None], guesses[:, self._pick]], dim=1)
        return self._tree(tokens, torch.ones_like(tokens, dtype=torch.bool))

    def update(self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput) -> None:
        rows = torch.arange(state.root.shape[0], device=state.root.device)
        self.last_hidden[: rows.shape[0]].copy_(target.hidden[rows, accepted.last])
