"""A draft model proposes: a separate small model with the target's vocabulary, or the target's own
first N layers and head (self-drafting, no second checkpoint).

The draft keeps its own KV cache in step with the target's. Each step it first re-reads the token
before the root and the root itself (two positions whose draft keys may be stale: the last accepted
draft was never fed, a rejected one overwrote its slot), then drafts k levels: one token per branch
per level. With one branch under sampling, each token is drawn from the draft distribution q, which
verification uses; with several branches the root's top-w tokens start w greedy chains.
"""

from __future__ import annotations

import dataclasses

import torch

from gorgon.kv_cache import KVCache
from gorgon.model.llama import ForwardOutput, Llama
from gorgon.sampling import SamplingTensors, target_logprobs, uniform_noise
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.tree import StaticTree, Tree, tree_mask
from gorgon.spec.verify import STREAM_DRAFT, Acceptance


class DraftModelDrafter(Drafter):
    row_state = ("cache",)

    def __init__(self, model: Llama, k: int, branches: int = 1, layers: int | None = None):
        """model: the draft (or the target itself, with `layers` = how many of its layers draft)."""
        self.model, self.k, self.branches = model, k, branches
        self.layers = layers
        self.shape = StaticTree.chains(branches, k)
        self.cache: KVCache | None = None
        self.sampling: SamplingTensors | None = None  # the batch's parameters, set by the runner
        self.mode = "greedy"

    def networks(self) -> list[torch.nn.Module]:
        return [] if self.layers is not None else [self.model]  # self-drafting shares the target

    def bind(self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(batch, capacity, device, dtype)
        config = self.model.config
        if self.layers is not None:
            config = dataclasses.replace(config, num_layers=self.layers)
        self.cache = KVCache(config, batch, capacity, device, dtype)

    def _forward(self, tokens, positions, slots=None, mask=None, kv_len=None) -> torch.Tensor:
        out = self.model(
            tokens, positions, self.cache, slots=slots, mask=mask, kv_len=kv_len, upto=self.layers
        )
        return self.model.logits(out.hidden)

    def prefill(self, tokens, next_tokens, positions, kv_len, hidden) -> None:
        self.model(tokens, positions, self.cache, kv_len=kv_len, upto=self.layers)

    def _choose(
        self, logits: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One token per row from draft logits [B, V]: argmax, or (one branch, sampling) a draw from q."""
        greedy = logits.argmax(-1)
        if self.mode == "greedy" or self.branches > 1:
            return greedy, None
        q = target_logprobs(logits, self.sampling, self.mode).exp()
        u = uniform_noise(self.sampling.seeds, positions, q.shape[1], STREAM_DRAFT)
        drawn = (torch.log(q.clamp_min(1e-38)) - torch.log(-torch.log(u))).argmax(-1)
        sampled = self.sampling.temperature > 0
        return torch.where(sampled, drawn, greedy), q

    def propose(self, state: SpecState) -> Tree:
        committed, b = state.committed, state.root.shape[0]
        w, k = self.branches, self.k
        prev = torch.gather(state.history, 1, (committed - 1).clamp_min(0)[:, None])
        inputs = torch.cat([prev, state.root[:, None]], dim=1)
        positions = committed[:, None] + torch.arange(-1, 1, device=committed.device)[None, :]
        logits = self._forward(inputs, positions, kv_len=state.kv_len)[:, -1]  # [B, V]
        _, _, anc, _ = self._static
        tokens = [state.root[:, None]]
        probs = [None]
        if w == 1:
            tok, q = self._choose(logits, committed + 1)
            level = tok[:, None]
            probs.append(q)
        else:
            level = logits.topk(w, dim=-1).indices  # [B, w]
        tokens.append(level)
        full_mask = tree_mask(anc[:b], committed, state.kv_len) if k > 1 else None
        for d in range(2, k + 1):
            # feed the previous level: nodes 1 + (d - 2) * w + r sit at slots committed + node index
            nodes = 1 + (d - 2) * w + torch.arange(w, device=committed.device)
            mask = full_mask[:, nodes]
            slots = committed[:, None] + nodes[None, :]
            pos = (committed + d - 1)[:, None].expand(b, w)
            logits = self._forward(level, pos, slots=slots, mask=mask)  # [B, w, V]
            if w == 1:
                tok, q = self._choose(logits[:, 0], committed + d)
                level = tok[:, None]
                probs.append(q)
            else:
                level = logits.argmax(-1)
            tokens.append(level)
        tree_tokens = torch.cat(tokens, dim=1)
        valid = torch.ones_like(tree_tokens, dtype=torch.bool)
        draft_probs = None
        if len(probs) > 1 and probs[1] is not None:
            draft_probs = torch.stack([torch.zeros_like(probs[1]), *probs[1:]], dim=1)  # [B, N, V]
        return self._tree(tree_tokens, valid, draft_probs)

    def update(self, state: SpecState, tree: Tree, accepted: Acceptance, target: ForwardOutput) -> None:
        if self.branches > 1:  # chains of one branch are already in path order
            self.cache.keep_path(state.committed, accepted.path, accepted.n_accepted)
