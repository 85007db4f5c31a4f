"""Prompt lookup (`lookup_chain`): the reference against a plain-Python definition, the Triton kernel
against the reference (in Triton's interpreter without a GPU), on fresh random histories every run."""

from __future__ import annotations

import pytest
import torch

from gorgon import LLM, GorgonError, SamplingParams, SpecConfig
from gorgon.kernels import pack_ancestors, reference, triton_ops  # TRITON_INTERPRET without a GPU
from gorgon.spec.drafters import Drafter, LookupDrafter, SpecState
from gorgon.spec.tree import StaticTree, Tree, ancestor_matrix
from helpers import exact_two_tokens, sample_frequencies, total_variation, write_small_vocab_checkpoint

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _by_hand(row: list[int], committed: int, k: int, n_min: int, n_max: int) -> tuple[list[int], list[bool]]:
    """The definition: longest n first, then the most recent earlier occurrence of the last n tokens
    (the root at `committed` included) whose continuation starts at or before the root."""
    for n in range(n_max, n_min - 1, -1):
        if committed + 1 < n:
            continue
        tail = row[committed - n + 1 : committed + 1]
        for start in range(committed, n - 1, -1):  # continuation start, most recent first
            if row[start - n : start] == tail:
                chain = [row[start + j] if start + j <= committed else 0 for j in range(k)]
                return chain, [start + j <= committed for j in range(k)]
    return [0] * k, [False] * k


def _histories(b: int, s: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    history = torch.randint(0, vocab, (b, s))
    committed = torch.randint(0, s, (b,))
    committed[0] = s - 1  # a full row
    return history, committed


@pytest.mark.parametrize("s, vocab", [(1, 3), (9, 2), (40, 3), (300, 5), (2100, 4)])
@pytest.mark.parametrize("k, n_min, n_max", [(4, 2, 4), (1, 1, 1), (6, 1, 3), (3, 3, 5)])
def test_reference_lookup_follows_its_definition(s, vocab, k, n_min, n_max):
    history, committed = _histories(3, s, vocab)
    chain, ok = reference.lookup_chain(history, committed, k, n_min, n_max)
    for row in range(3):
        want_chain, want_ok = _by_hand(history[row].tolist(), int(committed[row]), k, n_min, n_max)
        assert chain[row].tolist() == want_chain and ok[row].tolist() == want_ok, row


@pytest.mark.parametrize("s, vocab", [(1, 3), (9, 2), (40, 3), (300, 5), (2100, 4)])
@pytest.mark.parametrize("k, n_min, n_max", [(4, 2, 4), (1, 1, 1), (3, 3, 5)])
def test_triton_lookup_matches_the_reference(s, vocab, k, n_min, n_max):
    history, committed = (t.to(DEVICE) for t in _histories(3, s, vocab))
    want = reference.lookup_chain(history, committed, k, n_min, n_max)
    got = triton_ops.lookup_chain(history, committed, k, n_min, n_max)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and torch.equal(g, w), (g, w)


def test_a_repeated_phrase_is_found():
    # ... 5 6 7 8 9 ... 5 6 7 | root 7: the last 3 tokens (5 6 7) occurred before, followed by 8 9 1
    row = [1, 5, 6, 7, 8, 9, 1, 2, 5, 6, 7]
    history = torch.tensor([row + [0] * 5])
    for ops in (reference, triton_ops):
        chain, ok = ops.lookup_chain(history.to(DEVICE), torch.tensor([10], device=DEVICE), 4, 2, 4)
        assert chain.tolist() == [[8, 9, 1, 2]] and ok.all()


# ------------------------------------------------------------------ a prompt-lookup chain beside heads


class _Static(Drafter):
    """A stand-in head drafter: a static tree (wide enough that the chain needs another bit word)."""

    def __init__(self, tree: StaticTree):
        self.shape = tree

    def propose(self, state: SpecState) -> Tree:
        b, n = state.root.shape[0], self.shape.size
        tokens = torch.cat([state.root[:, None], torch.full((b, n - 1), 50, device=state.root.device)], 1)
        return self._tree(tokens, torch.ones_like(tokens, dtype=torch.bool))


@pytest.mark.parametrize("width", [3, 31, 40])
def test_the_chain_hangs_from_the_root_with_consistent_masks(width):
    base = _Static(StaticTree.chains(width, 1))  # the root and `width` children
    drafter = LookupDrafter(base, 4)
    drafter.bind(2, 64, torch.device("cpu"), torch.float32)
    history = torch.zeros(2, 64, dtype=torch.int64)
    history[0, :11] = torch.tensor([1, 5, 6, 7, 8, 9, 1, 2, 5, 6, 7])  # row 0: a match; row 1: none
    history[1, :3] = torch.tensor([1, 2, 3])
    state = SpecState(torch.tensor([7, 3]), torch.tensor([10, 2]), history, 64)
    tree = drafter.propose(state)
    n = width + 1
    assert tree.size == drafter.tree_size == n + 4 and tree.max_depth == drafter.max_depth == 4
    assert tree.tokens[0, n:].tolist() == [8, 9, 1, 2] and tree.valid[0, n:].all()
    assert not tree.valid[1, n:].any() and tree.valid[:, :n].all()
    assert tree.parents[0, n:].tolist() == [0, n, n + 1, n + 2]
    assert tree.depths[0, n:].tolist() == [1, 2, 3, 4]
    assert torch.equal(tree.ancestors, ancestor_matrix(tree.parents))
    assert torch.equal(tree.bits, pack_ancestors(tree.ancestors))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["medusa", "eagle"])
def test_greedy_with_the_lookup_chain_equals_plain_on_the_default_model(default_llm, kind):
    """Shipped heads plus a lookup chain, on prompts that quote themselves: identical output, and the
    chain's deeper drafts are accepted (paths longer than EAGLE's own depth of 3)."""
    passage = ("The council approved a plan to add three bus routes and extend the light rail line to the "
               "airport by 2029. The plan also adds bike lanes on Main Street.")  # fmt: skip
    questions = [
        f"Summarize this passage: {passage}",
        f"{passage}\nWhen will the rail line reach the airport?",
    ]
    tok = default_llm.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True) for q in questions]
    params = SamplingParams(max_tokens=64, temperature=0.0)
    expected = [o.token_ids for o in default_llm.generate(prompts, params)]
    lookup = LLM.from_model(default_llm.model, tok, speculative=SpecConfig(kind, lookup=5))
    outs = lookup.generate(prompts, params)
    assert [o.token_ids for o in outs] == expected
    assert any(len(o.stats["acceptance_rate_per_position"]) == 5 for o in outs)
    assert max(o.stats["acceptance_rate_per_position"][4] for o in outs) > 0


def test_lookup_settings_are_checked():
    with pytest.raises(GorgonError, match="lookup"):
        SpecConfig("ngram", lookup=3)
    with pytest.raises(GorgonError, match="lookup"):
        SpecConfig("eagle", lookup=-1)
    with pytest.raises(GorgonError, match="prompt_lookup_min"):
        SpecConfig("medusa", lookup=3, prompt_lookup_min=5, prompt_lookup_max=4)


def test_sampling_with_the_lookup_chain_is_lossless(tmp_path):
    """Untrained Medusa heads (each the identity: they guess the target's own next token) plus a lookup
    chain on a prompt that repeats itself: the first two sampled tokens follow the target's exact joint
    distribution, as closely as plain sampling does."""
    from gorgon.heads.base import save_head, target_signature
    from gorgon.heads.medusa import MedusaConfig, MedusaHeads

    write_small_vocab_checkpoint(tmp_path / "model")
    plain = LLM(model=str(tmp_path / "model"), device="cpu", dtype="float32")
    cfg = MedusaConfig(plain.config.hidden_size, num_heads=2, num_layers=1, tree=((0,), (1,), (0, 0)))
    config = {"kind": "medusa", "target": target_signature(plain.model), "medusa": cfg.to_json()}
    save_head(tmp_path / "medusa", MedusaHeads(cfg), config)
    spec = SpecConfig("medusa", heads=str(tmp_path / "medusa"), lookup=2, prompt_lookup_min=1)
    speculative = LLM.from_model(plain.model, plain.tokenizer, speculative=spec)
    prompt, draws = [3, 5, 7, 3, 5, 9, 3, 5], 4000
    exact = exact_two_tokens(plain, prompt)
    noise = (0.5 * (exact * (1 - exact) / draws).sqrt() * (2 / torch.pi) ** 0.5).sum().item()
    assert total_variation(sample_frequencies(plain, prompt, draws), exact) < 2.5 * noise
    assert total_variation(sample_frequencies(speculative, prompt, draws), exact) < 2.5 * noise
    accept_all = SpecConfig("medusa", heads=str(tmp_path / "medusa"), lookup=2, prompt_lookup_min=1,
                            acceptance="typical", typical_epsilon=1e-9, typical_alpha=1e-9)  # fmt: skip
    wrong = LLM.from_model(plain.model, plain.tokenizer, speculative=accept_all)
    assert total_variation(sample_frequencies(wrong, prompt, draws), exact) > 2.5 * noise  # the test's power


def _tree(kind: str, b: int, n: int, broadcast: bool):
    """A random tree of n nodes (parents precede children) as a drafter hands it over: static shapes may
    be views with stride 0 over the batch."""
    if kind == "chain":
        parents = [0, *range(n - 1)]
    else:
        parents = [0] + [int(torch.randint(0, i, ())) for i in range(1, n)]
    rows = 1 if broadcast else b
    par = torch.tensor([parents] * rows)
    depths = torch.zeros(rows, n, dtype=torch.int64)
    for i in range(1, n):
        depths[:, i] = depths[:, parents[i]] + 1
    anc = ancestor_matrix(par)
    valid = torch.rand(rows, n) > 0.2
    if broadcast:
        par, depths, anc, valid = (
            par.expand(b, -1),
            depths.expand(b, -1),
            anc.expand(b, -1, -1),
            valid.expand(b, -1),
        )
    tokens = torch.randint(0, 9, (b, n))
    return [x.to(DEVICE) for x in (tokens, par, depths, valid, anc)]


@pytest.mark.parametrize("n", [1, 7, 31, 32, 40, 90])
@pytest.mark.parametrize("k", [1, 4, 6])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("broadcast", [True, False])
def test_triton_lookup_extend_matches_the_reference(n, k, packed, broadcast):
    tokens, parents, depths, valid, anc = _tree("random", 3, n, broadcast)
    bits = pack_ancestors(anc) if packed else None
    history, committed = (t.to(DEVICE) for t in _histories(3, 60, 3))
    args = (tokens, parents, depths, valid, anc, bits, history, committed, k, 2, 4)
    want = reference.lookup_extend(*args)
    got = triton_ops.lookup_extend(*args)
    for name, g, w in zip(["tokens", "parents", "depths", "valid", "anc", "bits"], got, want, strict=True):
        if w is None:
            assert g is None
            continue
        assert g.dtype == w.dtype and torch.equal(g, w), name
    tree = Tree(*want[:4], 1, 1, None, want[4], want[5])
    assert torch.equal(tree.ancestors, ancestor_matrix(tree.parents))  # the extension is a tree
