"""The drafter interface: propose a tree from the batch's state; learn what was accepted.

Everything a drafter does runs on the device inside the speculative step (one CUDA graph on a GPU):
it reads the state's static buffers and returns tensors of static shapes, never reading back.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import torch

from gorgon.kernels import reference
from gorgon.kv_cache import KVCache
from gorgon.model.llama import ForwardOutput
from gorgon.spec.tree import StaticTree, Tree
from gorgon.spec.verify import Acceptance


@dataclass
class SpecState:
    """Where each row stands at the start of a step (static device buffers, rows 0..B-1).

    root [B]: the last committed token, not yet in the target's cache; committed [B]: its position (the
    number of tokens whose keys and values are cached); history [B, S]: every token so far, prompt
    included, the root at index committed; kv_len: the attended cache length this step was built for.
    """

    root: torch.Tensor
    committed: torch.Tensor
    history: torch.Tensor
    kv_len: int


class Drafter(ABC):
    """Proposes candidate trees. Subclasses set `shape` (their static tree) in __init__.

    Medusa and EAGLE drafters read the target's hidden states: they list the layers they need in
    `hidden_layers` and receive the target's forward output for the tree in `update`.
    """

    shape: StaticTree
    hidden_layers: tuple[int, ...] = ()
    # Attributes holding per-row state, tensors [B, ...] or KV caches: what `rows` narrows to one row.
    row_state: tuple[str, ...] = ()
    # the kernel backend of the drafter's own fused ops (draft_expand, ...); the runner sets its own
    ops: ModuleType = reference

    @contextlib.contextmanager
    def rows(self, row: int) -> Iterator[None]:
        """Within the block, the drafter's per-row state is row `row`'s alone (batch 1), so that prefill
        and start for a request joining a running batch touch no other row."""
        saved = {name: getattr(self, name) for name in self.row_state}
        try:
            for name, value in saved.items():
                setattr(self, name, value.rows(row) if isinstance(value, KVCache) else value[row : row + 1])
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    @property
    def max_depth(self) -> int:
        return self.shape.depth

    @property
    def tree_size(self) -> int:
        return self.shape.size

    @property
    def scratch_slots(self) -> int:
        """Cache slots past the committed ones that a step may write (the tree, or a drafting pool)."""
        return self.tree_size

    def accept_paths(self, depth: int) -> None:  # noqa: B027 (a hook: most drafters read any path)
        """Verification may accept paths up to `depth` nodes deep, deeper than this drafter's own trees (a
        wrapper adds a deeper branch): called before bind."""

    def networks(self) -> list[torch.nn.Module]:
        """The drafter's own networks (not the target's), which run on the target's backends."""
        return []

    def bind(self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        """Allocate per-batch buffers (a draft model's KV cache, say) for `batch` rows of `capacity` slots."""
        self._static = self.shape.tensors(batch, device)
        self._max_children = self.shape.max_children()

    def prefill(  # noqa: B027 (a hook: drafters without state of their own need nothing)
        self, tokens: torch.Tensor, next_tokens: torch.Tensor, positions: torch.Tensor, kv_len: int,
        hidden: torch.Tensor,
    ) -> None:  # fmt: skip
        """See (a chunk of) the prompts [B, T] the target was just prefilled with: right-padded tokens at
        positions [B, T], each position's following prompt token (next_tokens, [B, T]; unknown past a
        prompt's end), and the target's final hidden states there [B, T, H]."""

    def start(  # noqa: B027
        self, root: torch.Tensor, last: torch.Tensor, last_hidden: torch.Tensor, kv_len: int
    ) -> None:
        """After prefill: root [B] is each row's first generated token, `last` [B] the position of its last
        prompt token, last_hidden [B, H] the target's final hidden state there."""

    @abstractmethod
    def propose(self, state: SpecState) -> Tree:
        """The candidate tree for this step, root = state.root."""

    def update(  # noqa: B027 (a hook: most drafters need nothing)
        self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput
    ) -> None:
        """Called after verification, before the state advances (state.committed is still the old root's
        position); `target` is the target's forward output for the tree's nodes."""

    def _tree(
        self, tokens: torch.Tensor, valid: torch.Tensor, draft_probs: torch.Tensor | None = None
    ) -> Tree:
        parents, depths, anc, bits = self._static
        b = tokens.shape[0]
        return Tree(
            tokens,
            parents[:b],
            depths[:b],
            valid,
            self.shape.depth,
            self._max_children,
            draft_probs,
            anc[:b],
            bits[:b],
        )
