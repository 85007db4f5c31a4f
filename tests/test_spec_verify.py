"""Trees, verification rules and KV compaction, on hand-built cases with known answers."""

from __future__ import annotations

import pytest
import torch

from gorgon.config import ModelConfig, SamplingParams
from gorgon.kernels import reference
from gorgon.kv_cache import KVCache
from gorgon.sampling import SamplingTensors
from gorgon.spec.tree import StaticTree, Tree, ancestor_matrix, tree_mask
from gorgon.spec.verify import TypicalAcceptance, verify, verify_greedy, verify_sampling, verify_typical

V = 8
OPS = reference  # the kernel backend verification runs with

# root 0; depth 1: nodes 1, 2; node 3 under 1; node 4 under 2; node 5 under 4
PARENTS = [0, 0, 0, 1, 2, 4]
DEPTHS = [0, 1, 1, 2, 2, 3]


def _tree(tokens: list[int], valid: list[bool] | None = None, batch: int = 1) -> Tree:
    t = lambda xs: torch.tensor([xs] * batch)
    return Tree(t(tokens), t(PARENTS), t(DEPTHS), t(valid or [True] * len(tokens)), 3, 2)


def _greedy_logits(next_token: list[int]) -> torch.Tensor:
    """Logits whose argmax at node i is next_token[i]."""
    logits = torch.zeros(1, len(next_token), V)
    for i, t in enumerate(next_token):
        logits[0, i, t] = 5.0
    return logits


def test_ancestors_and_mask():
    anc = ancestor_matrix(torch.tensor([PARENTS]))[0]
    assert anc[5].nonzero()[:, 0].tolist() == [0, 2, 4, 5]
    assert anc[3].nonzero()[:, 0].tolist() == [0, 1, 3]
    mask = tree_mask(anc[None], torch.tensor([4]), 12)[0]
    assert mask[:, :4].all()  # every node sees the committed slots
    assert mask[5, 4:10].tolist() == [True, False, True, False, True, True]
    assert not mask[:, 10:].any()


def test_static_tree_shapes():
    tree = StaticTree.from_paths([[0], [1], [0, 0], [1, 0], [0, 0, 0], [0, 1]])
    assert tree.size == 7 and tree.depth == 3 and tree.max_children() == 2
    assert tree.parents() == [0, 0, 0, 1, 1, 2, 3]
    chains = StaticTree.chains(2, 3)
    assert chains.parents() == [0, 0, 0, 1, 2, 3, 4] and chains.depths() == [0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        StaticTree.from_paths([[0, 1]])


def test_first_child_rejected_second_accepted():
    # target: root -> 6, node 2 (token 6) -> 3, node 4 (token 3) -> 1, node 5 (token 1) -> 7
    tree = _tree([9 % V, 5, 6, 2, 3, 1])
    acc = verify_greedy(tree, _greedy_logits([6, 0, 3, 0, 1, 7]), OPS)
    assert acc.n_accepted.item() == 3 and acc.last.item() == 5  # the deepest leaf
    assert acc.path[0].tolist() == [2, 4, 5] and acc.bonus.item() == 7
    assert acc.emitted(tree)[0].tolist() == [6, 3, 1, 7]


def test_whole_tree_rejected():
    tree = _tree([0, 5, 6, 2, 3, 1])
    acc = verify_greedy(tree, _greedy_logits([4, 0, 0, 0, 0, 0]), OPS)
    assert acc.n_accepted.item() == 0 and acc.bonus.item() == 4 and acc.last.item() == 0
    assert acc.emitted(tree)[0, 0].item() == 4


def test_invalid_nodes_are_never_accepted():
    tree = _tree([0, 5, 6, 2, 3, 1], valid=[True, True, False, True, True, True])
    acc = verify_greedy(tree, _greedy_logits([6, 2, 3, 0, 1, 7]), OPS)
    assert acc.n_accepted.item() == 0 and acc.bonus.item() == 6


def test_partial_path_then_bonus():
    tree = _tree([0, 5, 6, 2, 3, 1])
    acc = verify_greedy(tree, _greedy_logits([5, 4, 0, 0, 0, 0]), OPS)  # node 1 right, its child wrong
    assert acc.n_accepted.item() == 1 and acc.path[0, 0].item() == 1 and acc.bonus.item() == 4


def _st(params: list[SamplingParams]) -> SamplingTensors:
    return SamplingTensors.build(params, list(range(len(params))), torch.device("cpu"))


def test_mixed_batch_greedy_rows_verify_greedily():
    tree = _tree([0, 5, 6, 2, 3, 1], batch=2)
    logits = _greedy_logits([6, 0, 3, 0, 1, 7]).expand(2, -1, -1) * 10
    st = _st([SamplingParams(temperature=0.0), SamplingParams(temperature=1.0)])
    acc = verify(tree, logits, st, st.mode, torch.tensor([10, 10]), OPS)
    assert acc.n_accepted[0].item() == 3 and acc.bonus[0].item() == 7
    # with logits this peaked the sampled row agrees almost surely
    assert acc.n_accepted[1].item() == 3


def _joint_frequencies(draft_probs, target_logits, rule, draws=20000):
    """Frequencies of (first, second) emitted token over `draws` seeds for a chain root -> a -> b, where
    a and b are drawn from draft_probs (or are fixed tokens 2, 3 when there is no draft distribution)."""
    b = draws
    if draft_probs is None:
        tokens = torch.tensor([[1, 2, 3]]).expand(b, -1)
    else:
        g = torch.Generator().manual_seed(1)
        drawn = [torch.multinomial(draft_probs[0, i], b, replacement=True, generator=g) for i in (1, 2)]
        tokens = torch.stack([torch.ones(b, dtype=torch.long), *drawn], dim=1)
    tree = Tree(
        tokens, torch.tensor([[0, 0, 1]]).expand(b, -1),
        torch.tensor([[0, 1, 2]]).expand(b, -1), torch.ones(b, 3, dtype=torch.bool), 2, 1,
        None if draft_probs is None else draft_probs.expand(b, -1, -1),
    )  # fmt: skip
    st = SamplingTensors.build([SamplingParams(temperature=1.0)] * b, list(range(b)), torch.device("cpu"))
    acc = rule(tree, target_logits.expand(b, -1, -1), st, st.mode, torch.full((b,), 3))
    out = acc.emitted(tree)
    joint = torch.zeros(V, V)
    first, second = out[:, 0], torch.where(acc.n_accepted >= 1, out[:, 1], -1)
    for f, s in zip(first.tolist(), second.tolist()):
        if s >= 0:
            joint[f, s] += 1
    return torch.bincount(first, minlength=V).float() / b, joint / b


@pytest.mark.parametrize("stochastic", [False, True])
def test_speculative_sampling_keeps_the_target_distribution(stochastic):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 3, V, generator=g) * 1.5  # logits at root, a, b
    draft = torch.softmax(torch.randn(1, 3, V, generator=g), -1) if stochastic else None
    p_root = torch.softmax(target[0, 0], -1)
    first, joint = _joint_frequencies(draft, target, verify_sampling)
    assert 0.5 * (first - p_root).abs().sum() < 0.02
    if not stochastic:  # P(first = 2, second = s) = p_root(2) * p_a(s): after a, the target at node a decides
        expected = p_root[2] * torch.softmax(target[0, 1], -1)
        assert 0.5 * (joint[2] - expected).abs().sum() < 0.02

    def wrong(tree, logits, st, mode, committed):  # accept every draft: the draft, not the target, decides
        return verify_typical(tree, logits, st, mode, committed, TypicalAcceptance(epsilon=1e-9, alpha=1e-9))

    first_wrong, _ = _joint_frequencies(draft, target, wrong)
    assert 0.5 * (first_wrong - p_root).abs().sum() > 0.02


def test_keep_path_moves_accepted_slots_into_place():
    cfg = ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=2, num_heads=2,
                      num_kv_heads=1, head_dim=4)  # fmt: skip
    cache = KVCache(cfg, 2, 16, torch.device("cpu"), torch.float32)
    cache.data.copy_(
        torch.arange(16, dtype=torch.float32)[None, None, None, :, None, None].expand_as(cache.data)
    )
    committed = torch.tensor([3, 5])
    path = torch.tensor([[2, 4, 5], [1, 0, 0]])  # row 0 accepts nodes 2, 4, 5; row 1 only node 1
    cache.keep_path(committed, path, torch.tensor([3, 1]))
    slot_values = cache.data[0, 1, :, :, 0, 0]
    assert slot_values[0, :8].tolist() == [0, 1, 2, 3, 5, 7, 8, 7]  # slots 4..6 <- 3+2, 3+4, 3+5
    assert slot_values[1, 5:8].tolist() == [5, 6, 7]  # node 1 already sits at slot 6


def _sequence(tiny_llm, **params):
    from gorgon.engine import Request, Sequence

    req = Request([5, 6, 7], SamplingParams(**params))
    return Sequence(0, req, tiny_llm.tokenizer, tiny_llm.config.max_position, stream=True)


def test_eos_inside_an_accepted_path_ends_the_request(tiny_llm):
    seq = _sequence(tiny_llm, max_tokens=50, temperature=0.0)
    seq.append([40])
    event = seq.append([41, 2, 43, 44], proposed_depth=3)  # 2 is the tiny model's end-of-sequence token
    assert seq.output == [40, 41, 2] and event.token_ids == [41, 2]
    assert event.finished and seq.finish_reason == "stop"
    assert seq.result().stats["accepted_length"] == 2.0  # tokens kept per step, the ones after EOS dropped


def test_max_tokens_reached_in_the_middle_of_a_path(tiny_llm):
    seq = _sequence(tiny_llm, max_tokens=3, temperature=0.0, ignore_eos=True)
    seq.append([40])
    event = seq.append([41, 42, 43, 44], proposed_depth=4)
    assert seq.output == [40, 41, 42] and event.finished and seq.finish_reason == "length"
    stats = seq.result().stats
    assert stats["acceptance_rate_per_position"] == [1.0, 1.0, 1.0, 0.0]


def test_ngram_branches_sharing_a_prefix_merge_into_a_trie():
    from gorgon.spec.drafters import NGramDrafter
    from gorgon.spec.drafters.base import SpecState

    drafter = NGramDrafter(k=3, n_min=1, n_max=1, branches=3)
    drafter.bind(1, 32, torch.device("cpu"), torch.float32)
    # "9" occurs three times; it was followed by 4 5 6, then 4 5 7, then 8 1 2. The root is the last 9.
    history = torch.tensor([[9, 4, 5, 6, 0, 9, 4, 5, 7, 0, 9, 8, 1, 2, 0, 9] + [0] * 16])
    tree = drafter.propose(SpecState(torch.tensor([9]), torch.tensor([15]), history, 32))
    # Branches (most recent first): 8 1 2 | 4 5 7 | 4 5 6. Nodes 1 + 3 j + r.
    assert tree.tokens[0].tolist() == [9, 8, 4, 4, 1, 5, 5, 2, 7, 6]
    assert tree.valid[0].tolist() == [True, True, True, False, True, True, False, True, True, True]
    # the third branch's "5" and "6" hang from the second branch's shared "4" and "5"
    assert tree.parents[0].tolist() == [0, 0, 0, 0, 1, 2, 2, 4, 5, 5]
    anc = tree.ancestor_matrix()[0]
    assert anc[9].nonzero()[:, 0].tolist() == [0, 2, 5, 9]
