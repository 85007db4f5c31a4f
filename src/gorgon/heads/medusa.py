"""Medusa heads: K small residual blocks on the target's last hidden state, each guessing a token further
ahead through the target's own (frozen, shared) LM head.

Head k (0-based) reads the final hidden state at position t, whose LM-head output predicts token t + 1,
and predicts token t + k + 2. Sharing the LM head keeps four heads of SmolLM2 at 1.3M parameters
(2.7 MB in bfloat16) instead of 4 x 28M for heads of their own, which would not fit the 12 MB budget
for shipped heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gorgon.spec.tree import StaticTree


@dataclass
class MedusaConfig:
    hidden_size: int
    num_heads: int = 4
    num_layers: int = 1  # residual blocks per head
    tree: tuple[tuple[int, ...], ...] = ()  # the static tree (top-k rank paths) chosen from accuracies

    def to_json(self) -> dict:
        d = asdict(self)
        d["tree"] = [list(p) for p in self.tree]
        return d

    @classmethod
    def from_json(cls, d: dict) -> MedusaConfig:
        tree = tuple(tuple(p) for p in d.get("tree", []))
        return cls(d["hidden_size"], d["num_heads"], d["num_layers"], tree)


class ResBlock(nn.Module):
    """x + SiLU(W x + b), with W and b zero at the start: every head begins as the identity, i.e. as the
    target's own next-token prediction."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.silu(self.linear(x))


class MedusaHeads(nn.Module):
    def __init__(self, config: MedusaConfig):
        super().__init__()
        self.config = config
        blocks = lambda: nn.Sequential(*[ResBlock(config.hidden_size) for _ in range(config.num_layers)])
        self.heads = nn.ModuleList(blocks() for _ in range(config.num_heads))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Features [..., K, H] of hidden states [..., H]; the target's LM head turns them into logits."""
        return torch.stack([head(hidden) for head in self.heads], dim=-2)


def best_tree(accuracy: list[list[float]], size: int) -> StaticTree:
    """The tree of `size` nodes (root included) with the largest expected number of accepted tokens,
    grown greedily: accuracy[d][r] is how often head d's rank-r guess is right, and a path's chance is
    the product along it (the heads taken as independent, as the Medusa authors do)."""
    chosen: dict[tuple[int, ...], float] = {(): 1.0}
    while len(chosen) < size:
        best, best_p = None, -1.0
        for path, p in chosen.items():
            depth = len(path)
            if depth >= len(accuracy):
                continue
            for r, acc in enumerate(accuracy[depth]):
                child = (*path, r)
                if child not in chosen and p * acc > best_p:
                    best, best_p = child, p * acc
        if best is None:
            break
        chosen[best] = best_p
    return StaticTree.from_paths([list(p) for p in chosen if p])
