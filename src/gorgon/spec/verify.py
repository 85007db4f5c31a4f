"""Verification: which drafted path the target accepts, and the token it adds after it.

Three rules, all on the device with static loops (no reading back), chosen per row by its sampling
parameters:

- greedy: the deepest node whose every ancestor (itself included) is the target's argmax at its
  parent; the bonus token is the target's argmax after it. Output equals plain greedy decoding.
- sampling (lossless): multi-candidate speculative sampling. At the current node, try its children in
  order: accept child x with probability min(1, p(x) / q(x)), otherwise replace p by the normalised
  residual max(p - q, 0) and try the next child. With no draft distribution q is a point mass on x
  (accept with probability p(x), then remove x from p). The bonus is drawn from what p is at the end.
  The output has exactly the target's distribution (temperature, top-k, top-p applied first).
- typical (lossy, Medusa's "typical acceptance"): a node is accepted when the target gives it more than
  min(epsilon, alpha * exp(-entropy)) at its parent; the bonus is sampled from the target there.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch

from gorgon.kernels import reference
from gorgon.sampling import SamplingTensors, target_logprobs, uniform_noise
from gorgon.spec.tree import Tree

# Random streams, so that draws for different purposes at one position are independent.
STREAM_BONUS = 0
STREAM_ACCEPT = 1  # + candidate rank
STREAM_DRAFT = 1000


@dataclass
class Acceptance:
    """What verification decided, per row: path [B, D] the accepted nodes in depth order (0 past the end),
    n_accepted [B] how many, last [B] the deepest accepted node (0 = root), bonus [B] the target's token
    after it; tokens [B, D + 1]: what `emitted` returns, when the verifier already made it."""

    path: torch.Tensor
    n_accepted: torch.Tensor
    last: torch.Tensor
    bonus: torch.Tensor
    tokens: torch.Tensor | None = None

    def emitted(self, tree: Tree) -> torch.Tensor:
        """The tokens this step adds, [B, D + 1]: the accepted drafted tokens, then the bonus token;
        entries past n_accepted + 1 are meaningless."""
        if self.tokens is not None:
            return self.tokens
        return reference.emitted_tokens(tree.tokens, self.path, self.n_accepted, self.bonus)


@dataclass(frozen=True)
class TypicalAcceptance:
    """Medusa's typical acceptance thresholds (lossy): accept when p > min(epsilon, alpha * exp(-H))."""

    epsilon: float = 0.09
    alpha: float = 0.3


def _accept_by_rule(tree: Tree, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given which nodes pass their own test, the deepest node whose whole path passes, and its path."""
    return reference.accept_passing(ok, tree.depths, tree.valid, tree.ancestor_matrix(), tree.max_depth)


def verify_greedy(tree: Tree, logits: torch.Tensor, ops: ModuleType) -> Acceptance:
    """logits [B, N, V] of the target at every node; ops: the kernel backend (its argmax and
    accept_greedy, one kernel each on GPUs)."""
    b, n, v = logits.shape
    pred = ops.argmax(logits.reshape(b * n, v)).view(b, n)
    anc = tree.ancestor_matrix()
    return Acceptance(
        *ops.accept_greedy(pred, tree.tokens, tree.parents, tree.depths, tree.valid, anc, tree.max_depth)
    )


def verify_typical(
    tree: Tree, logits: torch.Tensor, st: SamplingTensors, mode: str, committed: torch.Tensor,
    rule: TypicalAcceptance,
) -> Acceptance:  # fmt: skip
    probs = _node_probs(logits, st, mode)
    entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)  # [B, N]
    threshold = torch.minimum(torch.full_like(entropy, rule.epsilon), rule.alpha * torch.exp(-entropy))
    parent_probs = torch.gather(probs, 1, tree.parents[:, :, None].expand(-1, -1, probs.shape[2]))
    p_token = torch.gather(parent_probs, 2, tree.tokens[:, :, None])[:, :, 0]
    ok = p_token > torch.gather(threshold, 1, tree.parents)
    last, path = _accept_by_rule(tree, ok)
    n_acc = torch.gather(tree.depths, 1, last[:, None])[:, 0]
    p_last = torch.gather(probs, 1, last[:, None, None].expand(-1, 1, probs.shape[2]))[:, 0]
    bonus = _draw(p_last, st, committed + n_acc + 1)
    return Acceptance(path, n_acc, last, bonus)


def verify_sampling(
    tree: Tree, logits: torch.Tensor, st: SamplingTensors, mode: str, committed: torch.Tensor
) -> Acceptance:
    """Lossless multi-candidate speculative sampling (see the module docstring). committed [B] is the
    root's position: the token decided at depth d sits at committed + d, which seeds its random draws."""
    b = logits.shape[0]
    probs = _node_probs(logits, st, mode)
    rows = torch.arange(b, device=logits.device)
    cur = torch.zeros(b, dtype=torch.int64, device=logits.device)
    alive = torch.ones(b, dtype=torch.bool, device=logits.device)
    n_acc = torch.zeros(b, dtype=torch.int64, device=logits.device)
    p = probs[:, 0]
    path = torch.zeros(b, max(tree.max_depth, 1), dtype=torch.int64, device=logits.device)
    for d in range(1, tree.max_depth + 1):
        children = (tree.parents == cur[:, None]) & tree.valid & alive[:, None]
        children[:, 0] = False
        rank = torch.cumsum(children.long(), dim=1) * children
        chosen = torch.full_like(cur, -1)
        for k in range(tree.max_children):
            is_k = rank == k + 1
            has = is_k.any(-1) & (chosen < 0)
            c = is_k.float().argmax(-1)
            x = tree.tokens[rows, c]
            if tree.draft_probs is None:
                q = torch.zeros_like(p).scatter_(1, x[:, None], 1.0)
            else:
                q = tree.draft_probs[rows, c]
            qx = q[rows, x]
            u = uniform_noise(st.seeds, committed + d, 1, STREAM_ACCEPT + k)[:, 0]
            accept = has & (u * qx < p[rows, x])
            chosen = torch.where(accept, c, chosen)
            residual = (p - q).clamp_min(0)
            total = residual.sum(-1, keepdim=True)
            residual = torch.where(total > 0, residual / total.clamp_min(1e-30), p)
            p = torch.where((has & ~accept)[:, None], residual, p)
        moved = chosen >= 0
        cur = torch.where(moved, chosen, cur)
        path[:, d - 1] = torch.where(moved, chosen, path[:, d - 1])
        n_acc = n_acc + moved.long()
        p = torch.where(moved[:, None], probs[rows, cur], p)
        alive = alive & moved
    bonus = _draw(p, st, committed + n_acc + 1)
    return Acceptance(path[:, : tree.max_depth], n_acc, cur, bonus)


def verify(
    tree: Tree, logits: torch.Tensor, st: SamplingTensors, mode: str, committed: torch.Tensor,
    ops: ModuleType, typical: TypicalAcceptance | None = None,
) -> Acceptance:  # fmt: skip
    """Apply each row's rule: greedy rows (temperature 0) by argmax, the others by lossless speculative
    sampling, or by typical acceptance when `typical` is given. ops: the kernel backend."""
    greedy = verify_greedy(tree, logits, ops)
    if mode == "greedy":
        return greedy
    if typical is not None:
        other = verify_typical(tree, logits, st, mode, committed, typical)
    else:
        other = verify_sampling(tree, logits, st, mode, committed)
    pick = st.temperature > 0
    return Acceptance(
        torch.where(pick[:, None], other.path, greedy.path),
        torch.where(pick, other.n_accepted, greedy.n_accepted),
        torch.where(pick, other.last, greedy.last),
        torch.where(pick, other.bonus, greedy.bonus),
    )


def _node_probs(logits: torch.Tensor, st: SamplingTensors, mode: str) -> torch.Tensor:
    """The target's sampling distribution at every node, float32 [B, N, V]."""
    b, n, v = logits.shape
    rep = SamplingTensors(
        st.temperature.repeat_interleave(n), st.top_p.repeat_interleave(n), st.top_k.repeat_interleave(n),
        st.seeds.repeat_interleave(n), st.all_greedy, st.filtered,
    )  # fmt: skip
    return target_logprobs(logits.reshape(b * n, v), rep, mode).exp().view(b, n, v)


def _draw(p: torch.Tensor, st: SamplingTensors, positions: torch.Tensor) -> torch.Tensor:
    """One token per row from probabilities p [B, V] (Gumbel-max with the position's noise)."""
    u = uniform_noise(st.seeds, positions, p.shape[1], STREAM_BONUS)
    logp = torch.where(p > 0, torch.log(p.clamp_min(1e-38)), float("-inf"))
    return (logp - torch.log(-torch.log(u))).argmax(-1)
