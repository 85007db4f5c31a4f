"""Prompt lookup: draft the tokens that followed the latest earlier occurrence of the last n tokens.

Matching runs on the device over the whole history (prompt and output), longest n first, then most
recent; `num_branches` distinct matches (by their first continuation token) hang from the root as
chains of k tokens. A row with no match proposes nothing and decodes one token that step.
"""

from __future__ import annotations

import torch

from gorgon.kernels import reference
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.tree import StaticTree, Tree


class NGramDrafter(Drafter):
    def __init__(self, k: int, n_min: int = 2, n_max: int = 4, branches: int = 1):
        self.k, self.n_min, self.n_max, self.branches = k, n_min, n_max, branches
        self.shape = StaticTree.chains(branches, k)

    def matches(self, history: torch.Tensor, committed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the best `branches` continuations start: start [B, M] (an index into history) and found
        [B, M]. A match of the last n tokens (the root included) must end before the root; longest n
        first, then most recent (reference.lookup_scores, the ranking lookup_chain takes the best of)."""
        scores = reference.lookup_scores(history, committed, self.n_min, self.n_max)
        top, _ = scores.topk(self.branches, dim=1)
        found = top >= 0
        return torch.where(found, top % history.shape[1] + 1, 0), found

    def propose(self, state: SpecState) -> Tree:
        hist, committed = state.history, state.committed
        if self.branches == 1:  # one chain: the backend's lookup_chain (one kernel on GPUs)
            chain, ok = self.ops.lookup_chain(hist, committed, self.k, self.n_min, self.n_max)
            tokens = torch.cat([state.root[:, None], chain], dim=1)
            return self._tree(tokens, torch.cat([torch.ones_like(ok[:, :1]), ok], dim=1))
        b, s = hist.shape
        m, k = self.branches, self.k
        start, found = self.matches(hist, committed)  # [B, M]
        idx = start[:, :, None] + torch.arange(k, device=hist.device)[None, None, :]  # [B, M, k]
        chain = torch.gather(hist, 1, idx.clamp(max=s - 1).view(b, -1)).view(b, m, k)
        ok = found[:, :, None] & (idx <= committed[:, None, None])  # only tokens that exist
        ok = torch.cumprod(ok.long(), dim=2).bool()  # a chain stops at its first missing token
        # Node 1 + j * M + r is branch r at depth j + 1 (the static layout); branches that agree on their
        # first j + 1 tokens share those nodes: the later copies are dropped and their children hang
        # from the first copy. The tree's shape therefore changes from step to step.
        canon = self._first_equal_prefix(chain, ok)  # [B, M, k]: branch owning each prefix
        valid = ok & (canon == torch.arange(m, device=hist.device)[None, :, None])
        levels = torch.arange(k, device=hist.device)[None, None, :]
        parents = torch.where(levels == 0, 0, 1 + (levels - 1) * m + canon.roll(1, dims=2))  # [B, M, k]
        tokens = torch.cat([state.root[:, None], chain.transpose(1, 2).reshape(b, -1)], dim=1)
        flat = lambda t: t.transpose(1, 2).reshape(b, -1)
        valid = torch.cat([torch.ones_like(valid[:, :1, 0]), flat(valid)], dim=1)
        parents = torch.cat([torch.zeros_like(parents[:, :1, 0]), flat(parents)], dim=1)
        depths = self._static[1][:b]
        return Tree(tokens, parents, depths, valid, k, m)

    @staticmethod
    def _first_equal_prefix(chain: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """canon[b, r, j]: the first branch whose tokens 0..j equal branch r's (r itself if none earlier)."""
        same = (chain[:, :, None, :] == chain[:, None, :, :]) & ok[:, :, None, :] & ok[:, None, :, :]
        same = torch.cumprod(same.long(), dim=3).bool()  # [B, r, r', j]: prefixes 0..j agree
        return same.long().argmax(dim=2)  # the first r' that agrees (r agrees with itself)
