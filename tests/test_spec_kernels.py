"""The speculative step's tail kernels (triton_spec) against the reference: greedy acceptance and the
step's bookkeeping, on fresh random trees every run, then a whole tiny-model speculative step.

Outputs are poisoned first (allocations inside the kernels' wrappers too), so an element a kernel
forgets to write shows up as a mismatch. Everything is integers: equality is exact.
"""

from __future__ import annotations

import pytest
import torch

from gorgon.config import ModelConfig, RopeConfig, SamplingParams
from gorgon.kernels import reference, triton_ops  # conftest set TRITON_INTERPRET without a GPU
from gorgon.model.shapes import random_model
from gorgon.runner import ModelRunner
from gorgon.sampling import SamplingTensors
from gorgon.spec.drafters.draft_model import DraftModelDrafter
from gorgon.spec.tree import ancestor_matrix

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
POISON = -7


def _parents(kind: str, n: int) -> list[int]:
    """A tree of n nodes in which parents precede children."""
    if kind == "chain":
        return [0, *range(n - 1)]
    if kind == "star":
        return [0] * n
    if kind == "top3":  # full 3-ary tree, level by level
        return [0] + [(i - 1) // 3 for i in range(1, n)]
    return [0] + [int(torch.randint(0, i, ())) for i in range(1, n)]


def _trees(kind: str, b: int, n: int, vocab: int = 5):
    """(pred, tokens, parents, depths, valid, ancestors, max_depth) for b random trees of one kind, with
    the target agreeing on most nodes and on every node of one random path (so that deep paths are
    accepted), and a few nodes invalid."""
    parents = torch.tensor([_parents(kind, n) for _ in range(b)])
    depths = torch.zeros(b, n, dtype=torch.int64)
    for i in range(1, n):
        depths[:, i] = depths.gather(1, parents[:, i : i + 1])[:, 0] + 1
    tokens = torch.randint(0, vocab, (b, n))
    pred = torch.randint(0, vocab, (b, n))
    for i in torch.randperm(n)[: max(1, 3 * n // 4)].tolist():
        if i > 0:
            pred[torch.arange(b), parents[:, i]] = tokens[:, i]
    valid = torch.rand(b, n) > 0.1
    valid[:, 0] = True
    for row in range(b):  # the whole way to a random node agrees: a deep path to find
        node = int(torch.randint(0, n, ()))
        while node > 0:
            pred[row, parents[row, node]], valid[row, node] = tokens[row, node], True
            node = int(parents[row, node])
    max_depth = int(depths.max()) + int(torch.randint(0, 2, ()))  # a static bound may exceed the trees
    return [t.to(DEVICE) for t in (pred, tokens, parents, depths, valid, ancestor_matrix(parents))] + [
        max_depth
    ]


@pytest.fixture
def poisoned_empty(monkeypatch):
    """torch.empty that fills its tensors with POISON, so that the wrappers' outputs start poisoned."""
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(POISON))


@pytest.mark.parametrize("n", [1, 2, 7, 24, 64, 128])
@pytest.mark.parametrize("kind", ["random", "chain", "star", "top3"])
@pytest.mark.parametrize("b", [1, 3])
def test_accept_greedy_matches_the_reference(poisoned_empty, kind, n, b):
    args = _trees(kind, b, n)
    want = reference.accept_greedy(*args)
    got = triton_ops.accept_greedy(*args)
    names = ["path", "n_accepted", "last", "bonus", "emitted"]
    assert len(got) == len(want) == len(names)
    for g, w, name in zip(got, want, names, strict=True):
        assert g.dtype == torch.int64 and torch.equal(g, w), (name, g, w)


def test_accept_greedy_reads_broadcast_trees(poisoned_empty):
    """Drafters hand static shapes as views with stride 0 over the batch; bool inputs stay bool."""
    pred, tokens, parents, depths, valid, anc, d = _trees("top3", 1, 13)
    pred, tokens = pred.expand(3, -1).clone(), torch.randint(0, 5, (3, 13), device=DEVICE)
    args = (
        pred,
        tokens,
        parents.expand(3, -1),
        depths.expand(3, -1),
        valid.expand(3, -1),
        anc.expand(3, -1, -1),
        d,
    )
    for g, w in zip(triton_ops.accept_greedy(*args), reference.accept_greedy(*args)):
        assert torch.equal(g, w)


def _commit_inputs(b: int, n: int, width: int, extra: int = 0):
    pred, tokens, parents, depths, valid, anc, d = _trees("random", b, n)
    path, n_acc, _, bonus, _ = reference.accept_greedy(pred, tokens, parents, depths, valid, anc, d)
    history = torch.randint(100, 200, (b, width), device=DEVICE)
    spec_out = torch.full((b, d + 3 + extra), POISON, device=DEVICE)
    root = torch.full((b, 1), POISON, device=DEVICE)
    positions = torch.randint(0, width, (b, 1), device=DEVICE)
    return (tokens, depths, valid, path, n_acc, bonus), [history, spec_out, root, positions]


@pytest.mark.parametrize("n, width, limit", [(7, 64, 60), (24, 12, 9), (1, 8, 8), (64, 20, 17)])
@pytest.mark.parametrize("b", [1, 3])
def test_commit_step_matches_the_reference(b, n, width, limit):
    """Small histories and limits: rows whose emitted tokens run past the last column, and positions
    that stop at the limit."""
    inputs, outs = _commit_inputs(b, n, width, extra=4)
    mine = [t.clone() for t in outs]
    reference.commit_step(*inputs, *outs, limit)
    triton_ops.commit_step(*inputs, *mine, limit)
    for g, w, name in zip(mine, outs, ["history", "spec_out", "tokens", "positions"]):
        assert torch.equal(g, w), (name, g, w)
    assert (outs[1][:, -4:] == POISON).all()  # the debug columns are the caller's


def test_commit_step_clamps_at_the_history_end_and_the_limit():
    tokens = torch.tensor([[9, 11, 12, 13]], device=DEVICE)
    chain = dict(
        depths=torch.tensor([[0, 1, 2, 3]], device=DEVICE),
        valid=torch.ones(1, 4, dtype=torch.bool, device=DEVICE),
    )
    path = torch.tensor([[1, 2, 3]], device=DEVICE)
    for ops in (reference, triton_ops):
        history, spec_out = (
            torch.zeros(1, 6, dtype=torch.int64, device=DEVICE),
            torch.full((1, 6), POISON, device=DEVICE),
        )
        root, positions = (
            torch.zeros(1, 1, dtype=torch.int64, device=DEVICE),
            torch.tensor([[3]], device=DEVICE),
        )
        n_acc, bonus = torch.tensor([2], device=DEVICE), torch.tensor([42], device=DEVICE)
        ops.commit_step(
            tokens, chain["depths"], chain["valid"], path, n_acc, bonus, history, spec_out, root, positions, 5
        )
        # columns 4, 5, 6 -> 4, 5, 5: the last column holds the newest token that reached it, the bonus
        assert history.tolist() == [[0, 0, 0, 0, 11, 42]]
        assert spec_out.tolist() == [[3, 3, 11, 12, 42, 9]]  # past the bonus: path 3's token, the root's
        assert root.tolist() == [[42]] and positions.tolist() == [[5]]


TINY = ModelConfig(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
    head_dim=16, rms_norm_eps=1e-5, rope=RopeConfig(theta=10000.0), max_position=512, tie_embeddings=True,
    eos_token_ids=(2,),
)  # fmt: skip


@pytest.mark.parametrize("layers, tree_debug", [(2, False), (1, True)])
def test_a_spec_step_with_the_triton_tail_matches_the_reference(layers, tree_debug):
    """A tiny model drafting for itself (all its layers: everything accepted; one: some) through whole
    speculative steps: the Triton acceptance and bookkeeping leave every buffer as the reference does."""
    model = random_model(TINY, torch.device(DEVICE), torch.float32, seed=1)
    runners = []
    for ops in (reference, triton_ops):
        runner = ModelRunner(model, cuda_graphs=False, host_blas=False, tree_debug=tree_debug,
                             drafter=DraftModelDrafter(model, 3, 2, layers=layers))  # fmt: skip
        runner.ops = ops  # the step's tail only; the model's own ops stay the reference's
        runners.append(runner)
    prompts = [[5, 6, 7, 8, 5, 6, 7], [3, 4, 3, 4, 3]]
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=0.8)]
    for runner in runners:
        runner.reserve(2, runner.slots_needed(7, 64))
        runner.start(prompts, SamplingTensors.build(params, [0, 1], torch.device(DEVICE)))
    accepted = 0
    for _ in range(6):
        for runner in runners:
            runner.spec_step(2, int(runner.buffers[2].positions.max()))
        ref, tri = (runner.buffers[2] for runner in runners)
        for name in ("history", "spec_out", "tokens", "positions"):
            assert torch.equal(getattr(tri, name), getattr(ref, name)), name
        accepted += int(ref.spec_out[:, 0].sum()) - 2
    assert accepted > 0
