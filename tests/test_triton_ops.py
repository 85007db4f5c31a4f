"""Triton kernels against the PyTorch reference: on a GPU when there is one, else in Triton's interpreter.

Inputs are fresh random tensors each run and outputs are poisoned first, so an element a kernel
forgets to write shows up as a mismatch.
"""

from __future__ import annotations

import pytest
import torch

from gorgon.errors import GorgonError
from gorgon.kernels import AttentionMeta, reference, triton_ops  # conftest set TRITON_INTERPRET without a GPU

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.bfloat16] if DEVICE == "cuda" else [torch.float32, torch.float16]


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm(dtype, with_residual):
    x = torch.randn(3, 5, 96, device=DEVICE, dtype=dtype)
    w = torch.randn(96, device=DEVICE, dtype=dtype)
    r = torch.randn_like(x) if with_residual else None
    y, h = triton_ops.rms_norm(x, w, 1e-5, r)
    ry, rh = reference.rms_norm(x, w, 1e-5, r)
    torch.testing.assert_close(y, ry, **_tol(dtype))
    torch.testing.assert_close(h, rh, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads, kv_heads, dim", [(4, 2, 16), (3, 1, 32), (4, 4, 64)])
def test_rope_write_kv(dtype, heads, kv_heads, dim):
    b, t, s = 2, 3, 12
    qkv = torch.randn(b, t, (heads + 2 * kv_heads) * dim, device=DEVICE, dtype=dtype)
    positions = torch.randint(0, 40, (b, t), device=DEVICE)
    slots = torch.stack([torch.randperm(s, device=DEVICE)[:t] for _ in range(b)])
    angles = torch.rand(64, dim // 2, device=DEVICE) * 6
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    caches = [torch.full((b, s, kv_heads, dim), float("nan"), device=DEVICE, dtype=dtype) for _ in range(4)]
    q = triton_ops.rope_write_kv(qkv, positions, slots, cos, sin, caches[0], caches[1], heads)
    rq = reference.rope_write_kv(qkv, positions, slots, cos, sin, caches[2], caches[3], heads)
    torch.testing.assert_close(q, rq, **_tol(dtype))
    torch.testing.assert_close(caches[0], caches[2], equal_nan=True, **_tol(dtype))  # same slots written
    torch.testing.assert_close(caches[1], caches[3], equal_nan=True, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul(dtype):
    gu = torch.randn(4, 2, 2 * 80, device=DEVICE, dtype=dtype) * 3
    torch.testing.assert_close(triton_ops.silu_mul(gu), reference.silu_mul(gu), **_tol(dtype))


@pytest.mark.parametrize("pool, k, first", [(31, 10, 11), (41, 10, 31), (9, 3, 4), (70, 8, 60)])
def test_carry_ancestors(pool, k, first):
    """A level's rows from its parents' plus its own column, bool and packed (the last word's top bit too)."""
    from gorgon.kernels.attention import pack_ancestors

    rows = torch.rand(2, k, pool, device=DEVICE) > 0.5
    bits = pack_ancestors(rows)
    parent = torch.randint(0, k, (2, k), device=DEVICE)
    want = reference.carry_ancestors(rows, bits, parent, first)
    got = triton_ops.carry_ancestors(rows, bits, parent, first)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(want[1], pack_ancestors(want[0]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("broadcast", [False, True])
def test_embed_concat(dtype, indexed, broadcast):
    """Embedding rows and feature rows (gathered by index, or a broadcast view) side by side, exactly."""
    weight = torch.randn(50, 24, device=DEVICE, dtype=dtype)
    tokens = torch.randint(0, 50, (3, 5), device=DEVICE)
    if broadcast:
        features = torch.randn(3, 1, 24, device=DEVICE, dtype=torch.float32).expand(
            3, 5 if not indexed else 2, -1
        )
    else:
        features = torch.randn(3, 7 if indexed else 5, 24, device=DEVICE, dtype=torch.float32)
    index = torch.randint(0, features.shape[1], (3, 5), device=DEVICE) if indexed else None
    want = reference.embed_concat(tokens, weight, features, index)
    got = triton_ops.embed_concat(tokens, weight, features, index)
    assert got.dtype == want.dtype == torch.float32 and torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads, kv_heads, dim", [(4, 4, 16), (6, 2, 32), (8, 2, 64), (9, 3, 64)])
@pytest.mark.parametrize("kv_len", [16, 300])
@pytest.mark.parametrize("kernel", triton_ops.DECODE_KERNELS)
def test_decode_attention(dtype, heads, kv_heads, dim, kv_len, kernel, monkeypatch):
    """Both decode kernels (the tree kernel on a one-node tree, and the split kernel) against float64."""
    monkeypatch.setenv("GORGON_DECODE_KERNEL", kernel)
    b, s = 3, kv_len + 20
    q = torch.randn(b, 1, heads, dim, device=DEVICE, dtype=dtype)
    k = torch.randn(b, s, kv_heads, dim, device=DEVICE, dtype=dtype)
    v = torch.randn(b, s, kv_heads, dim, device=DEVICE, dtype=dtype)
    # rows see different lengths, one of them the whole attended range, one a single slot
    positions = torch.tensor([[kv_len - 1], [0], [kv_len // 3]], device=DEVICE)
    meta = AttentionMeta(positions, kv_len)
    out = triton_ops.attend(q, k, v, meta, dim**-0.5)
    ref = reference.attend(q.double(), k.double(), v.double(), AttentionMeta(positions, kv_len), dim**-0.5)
    torch.testing.assert_close(out.double(), ref, **_tol(dtype))


def test_unknown_decode_kernel_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("GORGON_DECODE_KERNEL", "fast")
    q = torch.randn(1, 1, 4, 16, device=DEVICE)
    k, v = torch.randn(1, 8, 2, 16, device=DEVICE), torch.randn(1, 8, 2, 16, device=DEVICE)
    with pytest.raises(GorgonError, match="GORGON_DECODE_KERNEL"):
        triton_ops.attend(q, k, v, AttentionMeta(torch.tensor([[5]], device=DEVICE), 6), 0.25)


def test_non_decode_attention_falls_back_to_reference():
    q = torch.randn(1, 4, 4, 16, device=DEVICE)
    k, v = torch.randn(1, 8, 2, 16, device=DEVICE), torch.randn(1, 8, 2, 16, device=DEVICE)
    meta = AttentionMeta(torch.arange(4, device=DEVICE)[None] + 2, 8)
    torch.testing.assert_close(triton_ops.attend(q, k, v, meta, 0.25), reference.attend(q, k, v, meta, 0.25))


@pytest.mark.parametrize("speculative", [False, True])
def test_model_on_triton_kernels_generates_what_the_reference_does(tiny_hf, speculative):
    from gorgon import LLM, SamplingParams, SpecConfig

    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    prompts = ["The quick brown fox jumps. The quick brown fox", "Paris is"]
    spec = (
        SpecConfig("ngram", num_speculative_tokens=3, num_branches=2, prompt_lookup_min=1)
        if speculative
        else None
    )
    llm = LLM(str(tiny_hf[0]), device=DEVICE, dtype="float32", speculative=spec)
    llm.model.use_kernels(reference)
    expected = [o.token_ids for o in llm.generate(prompts, params)]
    llm.model.use_kernels(triton_ops)
    assert [o.token_ids for o in llm.generate(prompts, params)] == expected


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_takes_the_first_of_equal_maxima(dtype):
    x = torch.randn(3, 9000, device=DEVICE).to(dtype)
    x[1, 7000] = x[1, 5] = 50.0  # a tie across blocks: the earlier index wins
    x[2, 4100] = x[2, 4097] = 60.0  # a tie inside one block
    assert (
        triton_ops.argmax(x).tolist()
        == reference.argmax(x).tolist()
        == [reference.argmax(x)[0].item(), 5, 4097]
    )


def _random_parents(kind: str, n: int, g: torch.Generator) -> list[int]:
    if kind == "chain":
        return [0, *list(range(n - 1))]
    if kind == "star":
        return [0] * n
    if kind == "topk":  # full 3-ary tree, level by level
        return [0] + [(i - 1) // 3 for i in range(1, n)]
    return [0] + [int(torch.randint(0, i, (), generator=g)) for i in range(1, n)]


@pytest.mark.parametrize("kind", ["random", "chain", "star", "topk"])
@pytest.mark.parametrize("n", [1, 2, 7, 16, 40])
@pytest.mark.parametrize("heads, kv_heads, dim", [(4, 4, 16), (6, 2, 32), (8, 2, 64)])
@pytest.mark.parametrize("context", [100, 300])  # one program per row block, or split and merged
def test_tree_attention_against_float64(kind, n, heads, kv_heads, dim, context):
    from gorgon.kernels import TreeMask
    from gorgon.kernels.tree_attention import tree_attention
    from gorgon.spec.tree import ancestor_matrix

    g = torch.Generator().manual_seed(n * 100 + heads)
    dtype = torch.float32
    committed = torch.tensor([0, 37, context])  # an empty context, one off the tile size, the longest
    b, kv_len = 3, context + n
    parents = torch.stack([torch.tensor(_random_parents(kind, n, g)) for _ in range(b)])
    tree = TreeMask(committed.to(DEVICE), ancestor_matrix(parents).to(DEVICE))
    q = torch.randn(b, n, heads, dim, generator=g).to(DEVICE, dtype)
    k = torch.randn(b, kv_len + 5, kv_heads, dim, generator=g).to(DEVICE, dtype)
    v = torch.randn(b, kv_len + 5, kv_heads, dim, generator=g).to(DEVICE, dtype)
    out = torch.full_like(q, float("nan"))  # poisoned: an element the kernel does not write stays NaN
    tree_attention(q, k, v, tree.committed, tree.bits, kv_len, dim**-0.5, out=out)
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device=DEVICE), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, dim**-0.5)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


LAUNCHES = [
    dict(),  # the defaults: half-precision partials, split at 256
    dict(min_split=32, waves=8),  # many splits, each with a ragged last tile
    dict(block_m=32, block_n=32, min_split=32),  # a row block smaller than a KV head's rows
    dict(min_split=32, half_partials=False),
    dict(min_split=32, waves=8, tree_split=False),  # the last context split takes the tree
]


@pytest.mark.parametrize("launch", LAUNCHES)
def test_tree_attention_launch_settings_in_half_precision(launch):
    """Every launch setting gives the same attention; float16 exercises the half-precision partials (the
    interpreter has no bfloat16 arithmetic)."""
    from gorgon.kernels import TreeMask
    from gorgon.kernels.tree_attention import Launch, tree_attention
    from gorgon.spec.tree import ancestor_matrix

    g = torch.Generator().manual_seed(7)
    b, n, heads, kv_heads, dim, dtype = 3, 7, 6, 2, 32, torch.float16
    committed = torch.tensor([0, 37, 300])
    kv_len = 300 + n
    parents = torch.stack([torch.tensor(_random_parents("random", n, g)) for _ in range(b)])
    tree = TreeMask(committed.to(DEVICE), ancestor_matrix(parents).to(DEVICE))
    q, k, v = (torch.randn(b, s, h, dim, generator=g).to(DEVICE, dtype)
               for s, h in ((n, heads), (kv_len + 5, kv_heads), (kv_len + 5, kv_heads)))  # fmt: skip
    out = torch.full_like(q, float("nan"))
    tree_attention(q, k, v, tree.committed, tree.bits, kv_len, dim**-0.5, out=out, launch=Launch(**launch))
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device=DEVICE), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, dim**-0.5)
    torch.testing.assert_close(out.double(), ref, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n, heads, kv_heads, dim", [(1, 8, 2, 64), (2, 6, 2, 32), (5, 4, 4, 16)])
def test_tree_attention_fused_merge(n, heads, kv_heads, dim, dtype, monkeypatch):
    """The last program of each row block merges its splits (no merge kernel may run): equal to float64
    three calls in a row, so each call's last arrival must have zeroed the counters for the next."""
    from gorgon.kernels import TreeMask
    from gorgon.kernels import tree_attention as ta
    from gorgon.spec.tree import ancestor_matrix

    class NoMerge:
        def __getitem__(self, grid):
            raise AssertionError("the merge kernel ran: the splits were not fused")

    monkeypatch.setattr(ta, "_merge_kernel", NoMerge())
    g = torch.Generator().manual_seed(n)
    b = 3
    committed = torch.tensor([0, 37, 300])
    kv_len = 300 + n
    parents = torch.stack([torch.tensor(_random_parents("random", n, g)) for _ in range(b)])
    tree = TreeMask(committed.to(DEVICE), ancestor_matrix(parents).to(DEVICE))
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device=DEVICE), kv_len, tree=tree)
    for _ in range(3):
        q, k, v = (torch.randn(b, s, h, dim, generator=g).to(DEVICE, dtype)
                   for s, h in ((n, heads), (kv_len + 5, kv_heads), (kv_len + 5, kv_heads)))  # fmt: skip
        out = torch.full_like(q, float("nan"))
        launch = ta.Launch(min_split=32, waves=4, fuse_merge=True)
        ta.tree_attention(q, k, v, tree.committed, tree.bits, kv_len, dim**-0.5, out=out, launch=launch)
        ref = reference.attend(q.double(), k.double(), v.double(), meta, dim**-0.5)
        tol = 1e-4 if dtype == torch.float32 else 5e-3
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    assert int(ta.block_counters(q.device).abs().sum()) == 0


def test_tree_attention_with_scores_growing_along_the_context():
    """Keys grow along the context, so each row's maximum keeps rising, by far more than the scores'
    spread within a tile: every tile rescales the running sum and output, and the result stays exact."""
    from gorgon.kernels import TreeMask
    from gorgon.kernels.tree_attention import Launch, tree_attention
    from gorgon.spec.tree import ancestor_matrix

    g = torch.Generator().manual_seed(11)
    b, n, heads, kv_heads, dim = 2, 5, 4, 2, 32
    committed = torch.tensor([200, 130])
    kv_len = 200 + n
    parents = torch.stack([torch.tensor(_random_parents("random", n, g)) for _ in range(b)])
    tree = TreeMask(committed.to(DEVICE), ancestor_matrix(parents).to(DEVICE))
    q = torch.randn(b, n, heads, dim, generator=g).abs()
    ramp = torch.linspace(0.0, 6.0, kv_len + 5) ** 2  # scores up to ~36 q.k: far past 8 in base 2
    k = torch.rand(b, kv_len + 5, kv_heads, dim, generator=g) * ramp[None, :, None, None]
    v = torch.randn(b, kv_len + 5, kv_heads, dim, generator=g)
    q, k, v = q.to(DEVICE), k.to(DEVICE), v.to(DEVICE)
    out = torch.full_like(q, float("nan"))
    launch = Launch(min_split=32, block_n=32)
    tree_attention(q, k, v, tree.committed, tree.bits, kv_len, dim**-0.5, out=out, launch=launch)
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device=DEVICE), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, dim**-0.5)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_tree_mask_bits_pack_the_ancestor_relation():
    from gorgon.kernels import TreeMask
    from gorgon.spec.tree import ancestor_matrix

    parents = torch.tensor([[0] + [i - 1 for i in range(1, 70)]])  # a chain of 70: bits across 3 words
    tree = TreeMask(torch.tensor([5]), ancestor_matrix(parents))
    bits = tree.bits[0].long() & 0xFFFFFFFF
    unpacked = torch.stack([(bits[:, j // 32] >> (j % 32)) & 1 for j in range(70)], dim=1).bool()
    assert torch.equal(unpacked, tree.ancestors[0])


def test_keep_path_kernel_matches_the_reference():
    from gorgon.config import ModelConfig
    from gorgon.kv_cache import KVCache

    cfg = ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=3, num_heads=4, num_kv_heads=2,
                      head_dim=8)  # fmt: skip
    caches = [KVCache(cfg, 4, 40, torch.device(DEVICE), torch.float32) for _ in range(2)]
    caches[0].data.copy_(torch.randn_like(caches[0].data))
    caches[1].data.copy_(caches[0].data)
    committed = torch.tensor([3, 10, 0, 20], device=DEVICE)
    # row 0: nodes 2, 3, 4 in a row (each source the next destination); row 1: nothing; row 3: all of a chain
    path = torch.tensor([[2, 3, 4, 0], [1, 0, 0, 0], [1, 5, 6, 9], [1, 2, 3, 4]], device=DEVICE)
    accepted = torch.tensor([3, 0, 4, 4], device=DEVICE)
    caches[0].keep_path(committed, path, accepted)  # reference
    caches[1].keep_path(committed, path, accepted, triton_ops)
    torch.testing.assert_close(caches[1].data, caches[0].data, rtol=0, atol=0)


@pytest.mark.parametrize("b, r, v", [(1, 1, 8192), (2, 8, 8192), (3, 4, 300), (1, 8, 5000)])
@pytest.mark.parametrize("parents, vocab", [(False, False), (True, True)])
def test_draft_expand(b, r, v, parents, vocab):
    k = 8
    # float32 logits: no ties, so the order is defined (lower precisions tie often; either pick is right)
    logits = torch.randn(b, r, v, device=DEVICE) * 4
    scores = -torch.rand(b, r, device=DEVICE) * 5 if parents else None
    ids = torch.randperm(60000, device=DEVICE)[:v] if vocab else None
    got = triton_ops.draft_expand(logits, scores, k, ids)
    want = reference.draft_expand(logits, scores, k, ids)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert got[0].dtype == torch.float32 and got[1].dtype == got[2].dtype == torch.int64


def test_draft_expand_in_half_precision_keeps_the_best_scores():
    logits = (torch.randn(2, 8, 8192, device=DEVICE) * 4).to(DTYPES[1])
    got = triton_ops.draft_expand(logits, None, 8)
    want = reference.draft_expand(logits, None, 8)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)  # ties may swap, the values may not


@pytest.mark.parametrize("total", [9, 6])  # 9: the whole pool is the tree; 6: the best nodes of it
def test_eagle_drafting_with_triton_ops_grows_the_reference_tree(tiny_llm, total):
    """A drafting level on the Triton backend (tree attention over part of a tree, draft_expand) proposes
    the tree the reference ops do, with packed ancestor bits that match its ancestor matrix."""
    from gorgon.config import SamplingParams
    from gorgon.heads.eagle import EagleConfig, EagleLayer
    from gorgon.kernels.attention import TreeMask
    from gorgon.model.llama import Llama, use_kernels
    from gorgon.runner import ModelRunner
    from gorgon.sampling import SamplingTensors
    from gorgon.spec.drafters.base import SpecState
    from gorgon.spec.drafters.eagle import EagleDrafter

    model = Llama(tiny_llm.model.config)  # a copy on DEVICE, float32: the reference and Triton agree closely
    model.load_state_dict(tiny_llm.model.state_dict())
    model = model.to(DEVICE).eval().requires_grad_(False)
    model.reset_rope()
    torch.manual_seed(0)
    layer = EagleLayer(model.config).to(DEVICE).eval().requires_grad_(False)
    for p in layer.parameters():
        p.data.normal_(0, 0.2)
    drafter = EagleDrafter(
        model, layer, EagleConfig(model.config.hidden_size, top_k=3, depth=3, total_tokens=total)
    )
    runner = ModelRunner(model, cuda_graphs=False, host_blas=False, drafter=drafter)
    use_kernels(model, reference)
    use_kernels(layer, reference)
    runner.ops, drafter.ops = reference, reference
    runner.reserve(1, 256)
    runner.start([list(range(5, 40))], SamplingTensors.build([SamplingParams(temperature=0.0)], [0], DEVICE))
    buf = runner.buffers[1]
    state = SpecState(buf.tokens[:, 0], buf.positions[:, 0], buf.history, 256)
    with torch.inference_mode():
        want = drafter.propose(state)
        use_kernels(layer, triton_ops)
        drafter.ops = triton_ops
        got = drafter.propose(state)
    for name in ("tokens", "parents", "depths", "valid", "ancestors"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert len(set(got.tokens[0, 1:].tolist())) > 1  # a real tree, not one token repeated
    if got.bits is not None:
        assert torch.equal(got.bits, TreeMask(state.committed, got.ancestors).bits)


def test_wgmma_kernel_selection(monkeypatch):
    """Where Hopper's wgmma kernels run (decided from the H100 sweep): the warp-specialized one for
    head_dim 128 with 128 rows or more a KV head over long contexts, never for a decode step or head_dim
    64; forced or refused by Launch.wgmma; nowhere without a Hopper GPU."""
    from gorgon.kernels import tree_attention as ta

    q128 = torch.empty(1, 64, 32, 128, dtype=torch.bfloat16)
    assert ta._wgmma_kind(q128, ta.Launch(), rows=256, heads=8, span=8192) is None  # no Hopper here
    monkeypatch.setattr(ta, "_wgmma_capable", lambda q: True)
    kind = lambda q, rows, heads, span, **kw: ta._wgmma_kind(q, ta.Launch(**kw), rows, heads, span)
    assert kind(q128, rows=512, heads=8, span=8192) == "ws"  # batch 1, 128 tree tokens
    assert kind(q128, rows=256, heads=8, span=8192) is None  # batch 1, 64: short splits, slower
    assert kind(q128, rows=128, heads=64, span=8192) == "ws"  # batch 8, 32 tree tokens
    assert kind(q128, rows=256, heads=64, span=2048) == "ws"  # a full grid of 128-row blocks
    assert kind(q128, rows=256, heads=8, span=2048) is None  # batch 1: too little work a program
    assert kind(q128, rows=64, heads=64, span=8192) is None  # 16 tree tokens: half a block
    assert kind(q128, rows=4, heads=512, span=8192) is None  # a decode step
    assert kind(torch.empty(1, 64, 9, 64, dtype=torch.bfloat16), rows=192, heads=24, span=8192) is None
    assert kind(q128, rows=256, heads=8, span=8192, wgmma=False) is None
    assert kind(q128, rows=4, heads=8, span=64, wgmma=True) == "plain"
    assert kind(q128, rows=4, heads=8, span=64, wgmma=True, warp_specialize=True) == "ws"


def test_merge_program_warps():
    """The split merge's programs: one warp where a row's partials fit 64 values a thread (every batch-1
    shape measured on the H100), more for many splits, never past 8."""
    from gorgon.kernels import tree_attention as ta

    assert ta._merge_warps(16, 128) == 1  # Llama-3-8B heads, N=16: 14 partials a row
    assert ta._merge_warps(8, 64) == 1
    assert ta._merge_warps(64, 64) == 2  # SmolLM2 heads, N=1: ~44 partials
    assert ta._merge_warps(64, 128) == 4
    assert ta._merge_warps(256, 128) == 8
    assert ta._merge_warps(1024, 128) == 8


def test_128_row_grids_are_split_for_balance_over_the_sms():
    """Split counts on an H100's 132 SMs. Grids of 128-row blocks over more than a third of the SMs take
    the fewest splits whose modelled time ceil(k * programs / sms) / k is near the best; other grids split
    in whole rounds of resident programs; a grid that fills the SMs is never split; waves and splits
    override."""
    from gorgon.kernels import tree_attention as ta

    def splits(programs, per_sm, block_m, span=8192, ws=False, **kw):
        least = ta.WS_BALANCE_MIN_SPLIT if ws else None
        split = ta._split_size(span, programs, 132, 128, per_sm, ta.Launch(**kw), True, block_m, least)
        return -(-span // split)

    assert splits(72, 2, 128) == 3  # SmolLM2 heads, batch 8, N=128 (rounds: 2, one SM in ten doubled)
    assert splits(72, 2, 128, span=2048) == 3
    assert splits(96, 1, 128) == 4  # SmolLM2 heads, batch 16, N=64 (rounds: unsplit)
    assert splits(64, 1, 128, ws=True) == 2  # Llama-3-8B heads, batch 2, N=128 (rounds: unsplit)
    assert splits(96, 1, 128, ws=True) == 1  # batch 3: 4 splits would be too short for that kernel
    assert splits(128, 1, 128) == 1  # Llama-3-8B heads, batch 8, N=64: no split count balances better
    assert splits(32, 1, 128) == 3  # batch 1, N=128: a third of the SMs or fewer, rounds (3 + the tree's)
    assert splits(72, 2, 128, waves=1) == 2  # the rounds plan
    assert splits(72, 2, 128, splits=5) == 5
    assert splits(128, 2, 64, span=2048) == 1  # 64-row blocks: rounds (Llama-3-8B heads, batch 4, N=64)
    assert splits(8, 1, 64) == 13  # batch 1, N=16: 13 splits + the tree's in one round
    assert splits(144, 1, 128) == 1  # a grid that fills the SMs
    assert ta.balanced_splits(72, 132, 1) == 1  # a context too short to split


@pytest.mark.parametrize("min_split, half", [(256, False), (32, True)])
def test_partials_precision_follows_the_split_count(monkeypatch, min_split, half):
    """Half-precision partials by default only with HALF_MIN_PARTS or more a row: 8 rows of 4 heads a KV
    head over 1000 slots split in 4 (+ the tree's) keep float32, in 16 take float16; either way the
    merged result is the attention."""
    from gorgon.kernels import TreeMask
    from gorgon.kernels import tree_attention as ta
    from gorgon.spec.tree import ancestor_matrix

    seen = []
    merge = ta._merge_kernel

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                seen.append(args[1].dtype)  # the partials
                return merge[grid](*args, **kwargs)

            return launch

    monkeypatch.setattr(ta, "_merge_kernel", Spy())
    g = torch.Generator().manual_seed(3)
    b, n, heads, kv_heads, dim, dtype = 1, 8, 8, 2, 32, torch.float16
    committed, kv_len = torch.tensor([1000]), 1000 + n
    parents = torch.tensor([_random_parents("random", n, g)])
    tree = TreeMask(committed.to(DEVICE), ancestor_matrix(parents).to(DEVICE))
    q, k, v = (torch.randn(b, s, h, dim, generator=g).to(DEVICE, dtype)
               for s, h in ((n, heads), (kv_len, kv_heads), (kv_len, kv_heads)))  # fmt: skip
    launch = ta.Launch(min_split=min_split, waves=8, fuse_merge=False)  # the merge kernel sees the partials
    out = ta.tree_attention(q, k, v, tree.committed, tree.bits, kv_len, dim**-0.5, launch=launch)
    assert seen == [torch.float16 if half else torch.float32]
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device=DEVICE), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, dim**-0.5)
    torch.testing.assert_close(out.double(), ref, rtol=5e-3, atol=5e-3)
