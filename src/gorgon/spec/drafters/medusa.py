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
        # every head's residual blocks as one batched product per layer (a kernel each, not one per head)
        layers = [[head[i].linear for head in self.heads.heads] for i in range(self.heads.config.num_layers)]
        self._weights = [torch.stack([lin.weight.t() for lin in layer]).to(device, dtype) for layer in layers]
        self._biases = [torch.stack([lin.bias[None] for lin in layer]).to(device, dtype) for layer in layers]

    def networks(self) -> list[torch.nn.Module]:
        return [self.heads]

    def start(self, root, last, last_hidden, kv_len) -> None:
        self.last_hidden[: root.shape[0]].copy_(last_hidden)

    def propose(self, state: SpecState) -> Tree:
        b, k = state.root.shape[0], self.heads.config.num_heads
        x = self.last_hidden[None, :b].expand(k, -1, -1)  # [K, B, H]: what each head reads
        for weight, bias in zip(self._weights, self._biases, strict=True):  # x + SiLU(W x + b), per head
            x = x + torch.nn.functional.silu(torch.baddbmm(bias, x, weight))
        logits = self.target.logits(x.transpose(0, 1))  # [B, K, V]
        # each head's top max_rank guesses, best first: draft_expand with one node per (row, head)
        guesses = self.ops.draft_expand(logits.reshape(b * k, 1, -1), None, self.max_rank)[1].view(b, -1)
        tokens = torch.cat([state.root[:, None], guesses[:, self._pick]], dim=1)
        return self._tree(tokens, torch.ones_like(tokens, dtype=torch.bool))

    def update(self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput) -> None:
        rows = torch.arange(state.root.shape[0], device=state.root.device)
        self.last_hidden[: rows.shape[0]].copy_(target.hidden[rows, accepted.last])
