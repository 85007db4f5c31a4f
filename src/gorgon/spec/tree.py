"""Token trees as flat tensors, and what verification needs derived from them on the device.

Node 0 of every tree is the root: the last committed token, whose key and value are not yet in the
cache. Every other node is a drafted token whose parent has a smaller index (so parents precede
children). A batch of trees has the same node count N in every row; rows with fewer real nodes mark
the rest invalid, which verification never accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gorgon.kernels.attention import TreeMask, pack_ancestors


@dataclass
class Tree:
    """A batch of token trees: tokens, parents, depths, valid [B, N] (node 0 is the root; parents[:, 0]
    is 0 by convention), and optionally draft_probs [B, N, V]: the draft distribution each node was
    sampled from. Without it, candidates count as deterministic (a point mass), which keeps sampling
    lossless for any way of choosing them.

    max_depth and max_children are static bounds (Python ints) on the shape, so that verification can
    loop over depths and siblings without reading anything back from the device.
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    valid: torch.Tensor
    max_depth: int
    max_children: int
    draft_probs: torch.Tensor | None = None
    ancestors: torch.Tensor | None = None  # [B, N, N] when the drafter knows it (static shapes)
    bits: torch.Tensor | None = None  # the same packed as TreeMask.bits, when the drafter has it

    @property
    def size(self) -> int:
        return self.tokens.shape[1]

    def ancestor_matrix(self) -> torch.Tensor:
        if self.ancestors is None:
            self.ancestors = ancestor_matrix(self.parents)
        return self.ancestors


def ancestor_matrix(parents: torch.Tensor) -> torch.Tensor:
    """anc[b, i, j] = True when node j is node i or one of its ancestors. parents [B, N] -> [B, N, N] bool.

    Transitive closure by repeated squaring of (I + parent edges): log2(N) batched matrix products,
    no data-dependent control flow, so it can sit inside a CUDA graph.
    """
    b, n = parents.shape
    eye = torch.eye(n, dtype=torch.bool, device=parents.device).expand(b, n, n)
    edge = torch.zeros(b, n, n, dtype=torch.bool, device=parents.device)
    edge.scatter_(2, parents[:, :, None], True)
    reach = (eye | edge).float()
    for _ in range(max(1, (n - 1).bit_length())):
        reach = ((reach @ reach) > 0).float()
    return reach > 0


def tree_mask(anc: torch.Tensor, committed: torch.Tensor, kv_len: int) -> torch.Tensor:
    """Attention mask [B, N, kv_len] for a tree written at slots committed .. committed + N - 1: each node
    sees every committed slot and, among the tree's slots, its ancestors and itself."""
    return TreeMask(committed, anc).dense(kv_len)


@dataclass(frozen=True)
class StaticTree:
    """A fixed tree shape given as Medusa-style paths: each path is a list of top-k ranks, e.g. [0, 1]
    = the best candidate at depth 1, then the second best under it. Every prefix of a path must be a
    path too. Node i + 1 is paths[i] (sorted by depth, then lexicographically); node 0 is the root."""

    paths: tuple[tuple[int, ...], ...]

    @classmethod
    def from_paths(cls, paths: list[list[int]]) -> StaticTree:
        unique = sorted({tuple(p) for p in paths}, key=lambda p: (len(p), p))
        missing = [p for p in unique if len(p) > 1 and p[:-1] not in set(unique)]
        if missing:
            raise ValueError(f"tree paths {missing} lack their prefixes")
        return cls(tuple(unique))

    @classmethod
    def chains(cls, width: int, depth: int) -> StaticTree:
        """`width` chains of `depth` nodes under the root: branch r continues with its own best tokens."""
        return cls.from_paths([[r] + [0] * d for r in range(width) for d in range(depth)])

    @property
    def size(self) -> int:
        return len(self.paths) + 1

    @property
    def depth(self) -> int:
        return max((len(p) for p in self.paths), default=0)

    def parents(self) -> list[int]:
        index = {p: i + 1 for i, p in enumerate(self.paths)}
        return [0] + [index.get(p[:-1], 0) for p in self.paths]

    def depths(self) -> list[int]:
        return [0] + [len(p) for p in self.paths]

    def ranks(self) -> list[int]:
        """The top-k rank each node takes at its parent (0 for the root)."""
        return [0] + [p[-1] for p in self.paths]

    def max_children(self) -> int:
        parents = self.parents()
        return max((parents[1:].count(i) for i in range(self.size)), default=0)

    def tensors(
        self, batch: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """parents, depths [B, N], the ancestor matrix [B, N, N] of this shape and its packed bits
        (TreeMask.bits), on `device`: constants, so no step recomputes them."""
        parents = torch.tensor(self.parents(), device=device).expand(batch, -1).contiguous()
        depths = torch.tensor(self.depths(), device=device).expand(batch, -1).contiguous()
        anc = ancestor_matrix(parents)
        return parents, depths, anc, pack_ancestors(anc)


@dataclass
class StepTree:
    """One speculative step's candidate tree, read back to the host for display (the server's tree view).

    tokens, parents, depths: per node (node 0 is the root; parents -1 for the root and for nodes that were
    not real candidates); accepted: the accepted nodes from the root down; bonus: the token the target
    added after the last of them.
    """

    tokens: list[int]
    parents: list[int]
    depths: list[int]
    accepted: list[int]
    bonus: int
