"""A head drafter's tree with one more branch: a prompt-lookup chain from the root.

Medusa heads and the EAGLE layer guess from the target's features, and their guesses fade after a token
or two. Prompt lookup copies what followed the last few tokens earlier in the context, which is what
answers that quote their prompt (summaries, answers from a passage, code that repeats its names) do for
several tokens at a time. So the tree verified each step is the heads' tree plus the k tokens the lookup
finds, hung from the root as a chain: a few more tree tokens, which cost the verify forward almost
nothing. Greedy acceptance takes the deepest node whose whole path is the target's argmax, so where the
chain repeats the heads' first guesses the longer agreeing path wins; sampling stays lossless (the
chain is a deterministic draft: a point mass). A row with no match leaves the chain invalid, which
verification never accepts.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import ModuleType

import torch

from gorgon.config import SpecConfig
from gorgon.model.llama import ForwardOutput
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.tree import Tree
from gorgon.spec.verify import Acceptance


class LookupDrafter(Drafter):
    """`base`'s tree (its nodes first, unchanged) plus a lookup chain of k nodes at the end."""

    def __init__(self, base: Drafter, k: int, n_min: int = 2, n_max: int = 4):
        if k < 1 or not 1 <= n_min <= n_max:
            raise ValueError(f"prompt lookup needs k >= 1 and 1 <= n_min <= n_max, got {k}, {n_min}, {n_max}")
        self.base, self.k, self.n_min, self.n_max = base, k, n_min, n_max
        self.hidden_layers = base.hidden_layers
        base.accept_paths(self.max_depth)  # paths through the chain may run deeper than base's own

    # the runner's view: the combined tree's bounds; the rest is base's
    @property
    def ops(self) -> ModuleType:  # type: ignore[override]
        return self.base.ops

    @ops.setter
    def ops(self, value: ModuleType) -> None:
        self.base.ops = value

    @property
    def tree_size(self) -> int:
        return self.base.tree_size + self.k

    @property
    def max_depth(self) -> int:
        return max(self.base.max_depth, self.k)

    @property
    def scratch_slots(self) -> int:
        return max(self.base.scratch_slots, self.tree_size)

    def rows(self, row: int) -> AbstractContextManager[None]:
        return self.base.rows(row)

    def networks(self) -> list[torch.nn.Module]:
        return self.base.networks()

    def bind(self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        self.base.bind(batch, capacity, device, dtype)

    def prefill(self, tokens, next_tokens, positions, kv_len, hidden) -> None:
        self.base.prefill(tokens, next_tokens, positions, kv_len, hidden)

    def start(self, root, last, last_hidden, kv_len) -> None:
        self.base.start(root, last, last_hidden, kv_len)

    def propose(self, state: SpecState) -> Tree:
        tree = self.base.propose(state)
        if tree.draft_probs is not None:
            raise ValueError("prompt lookup joins deterministic drafts only (Medusa, EAGLE)")
        # the lookup and the extended tree's tensors: one kernel on GPUs (a dozen copies otherwise)
        tokens, parents, depths, valid, anc, bits = self.ops.lookup_extend(
            tree.tokens, tree.parents, tree.depths, tree.valid, tree.ancestor_matrix(), tree.bits,
            state.history, state.committed, self.k, self.n_min, self.n_max,
        )  # fmt: skip
        # the root gains a child; chain nodes have one each
        return Tree(tokens, parents, depths, valid, self.max_depth, tree.max_children + 1, None, anc, bits)

    def update(self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput) -> None:
        self.base.update(state, tree, accepted, target)


def with_lookup(drafter: Drafter, spec: SpecConfig, heads_config: dict) -> Drafter:
    """`drafter` (Medusa or EAGLE heads) with the lookup chain `spec` asks for, or the heads' own setting
    (heads_config: their JSON's medusa/eagle section) when it names none; unchanged for 0."""
    k = heads_config.get("lookup", 0) if spec.lookup is None else spec.lookup
    return LookupDrafter(drafter, k, spec.prompt_lookup_min, spec.prompt_lookup_max) if k else drafter
