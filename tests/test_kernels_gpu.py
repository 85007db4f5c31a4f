"""Tree attention and KV compaction on the GPU, every backend against float64 on real shapes.

Fresh random inputs each run; outputs poisoned with NaN first, so an element a kernel does not write
fails. Each batch holds one tree of each kind (random parents, chain, star, full top-k) at a different
committed length: empty, one past a tile, and long ones that are not multiples of the tile.
"""

from __future__ import annotations

import pytest
import torch

from gorgon.kernels import AttentionMeta, TreeMask, reference
from gorgon.spec.tree import ancestor_matrix

pytestmark = pytest.mark.gpu

KINDS = ["random", "chain", "star", "topk"]
CONTEXTS = {"short": [0, 1, 65, 200], "long": [0, 65, 1037, 4100]}  # one block / split and merged
TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float16: dict(rtol=5e-3, atol=5e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
}


def _parents(kind: str, n: int, g: torch.Generator) -> list[int]:
    if kind == "chain":
        return [0, *range(n - 1)]
    if kind == "star":
        return [0] * n
    if kind == "topk":
        return [0] + [(i - 1) // 4 for i in range(1, n)]
    return [0] + [int(torch.randint(0, i, (), generator=g)) for i in range(1, n)]


def _case(n, hq, hkv, d, dtype, context):
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    committed = torch.tensor(CONTEXTS[context])
    b, kv_len = len(KINDS), int(committed.max()) + n
    parents = torch.stack([torch.tensor(_parents(kind, n, g)) for kind in KINDS])
    tree = TreeMask(committed.cuda(), ancestor_matrix(parents).cuda())
    q = torch.randn(b, n, hq, d, generator=g).to("cuda", dtype)
    k = torch.randn(b, kv_len + 3, hkv, d, generator=g).to("cuda", dtype)
    v = torch.randn(b, kv_len + 3, hkv, d, generator=g).to("cuda", dtype)
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device="cuda"), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, d**-0.5)
    return q, k, v, tree, kv_len, ref


def _check(fn, n, hq, hkv, d, dtype, context):
    q, k, v, tree, kv_len, ref = _case(n, hq, hkv, d, dtype, context)
    out = torch.full_like(q, float("nan"))
    fn(q, k, v, tree.committed, tree.bits, kv_len, d**-0.5, out=out)
    torch.cuda.synchronize()
    torch.testing.assert_close(out.double(), ref, **TOL[dtype])


GRID = [
    (n, hq, hkv, d)
    for n in (1, 2, 7, 16, 64, 128)
    for hq, hkv in ((4, 4), (9, 3), (32, 8))  # GQA ratios 1, 3, 4
    for d in (64, 128)
]


CUDA_KERNELS = ["mma4", "mma8", "wmma", "wgmma4", "wgmma8", "ws"]


def _skip_unless_runs(kernel: str) -> None:
    from gorgon.kernels import cuda_ops

    # a conditional skip: Hopper-only kernels
    if kernel in ("wgmma4", "wgmma8", "ws") and not cuda_ops.has_wgmma():
        pytest.skip("the wgmma kernels need an sm_90 GPU")


@pytest.mark.parametrize("kernel", CUDA_KERNELS)  # float32: the exact kernel under each
@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n, hq, hkv, d", GRID)
def test_cuda_tree_attention(n, hq, hkv, d, dtype, context, kernel):
    from gorgon.kernels import cuda_ops

    if dtype == torch.float32 and kernel != "mma4":
        pytest.skip("float32 runs the exact kernel, tested once")
    _skip_unless_runs(kernel)
    attend = lambda *args, **kw: cuda_ops.tree_attention(*args, **kw, kernel=kernel)
    _check(attend, n, hq, hkv, d, dtype, context)


@pytest.mark.parametrize("kernel", CUDA_KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("target", [1, 10**6])  # one block per row block does all; the most splits
@pytest.mark.parametrize("n, hq, hkv, d", [(64, 32, 8, 128), (128, 4, 1, 64), (5, 8, 8, 128)])
def test_cuda_tree_attention_split_counts(n, hq, hkv, d, target, dtype, kernel, monkeypatch):
    from gorgon.kernels import cuda_ops

    _skip_unless_runs(kernel)

    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: target)
    attend = lambda *args, **kw: cuda_ops.tree_attention(*args, **kw, kernel=kernel)
    _check(attend, n, hq, hkv, d, dtype, "long")


FUSE_CASES = [
    (1, 32, 8, 128),
    (1, 9, 3, 64),
    (1, 4, 4, 64),
    (2, 32, 8, 128),
    (16, 32, 8, 128),
    (64, 9, 3, 64),
]


@pytest.mark.parametrize("kernel", ["mma4", "mma8", "wgmma4", "wgmma8", "ws"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("target", [8, 10**6])  # a few splits; the most
@pytest.mark.parametrize("n, hq, hkv, d", FUSE_CASES)
def test_cuda_fused_merge(n, hq, hkv, d, target, dtype, kernel, monkeypatch):
    """The split kernels merging their own splits (opt-in: the row block's last split to finish), a row a
    warp and several (rows past a block's first warps), one round of loads a warp and several: equal to
    float64, and every arrival counter zero again afterwards."""
    from gorgon.kernels import cuda_ops
    from gorgon.kernels.attention import block_counters

    _skip_unless_runs(kernel)
    monkeypatch.setattr(cuda_ops, "_target_blocks", lambda device: target)
    attend = lambda *args, **kw: cuda_ops.tree_attention(*args, **kw, kernel=kernel, fuse=True)
    _check(attend, n, hq, hkv, d, dtype, "long")
    assert int(block_counters(torch.device("cuda", torch.cuda.current_device())).abs().sum()) == 0


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("n, hq, hkv, d", [(7, 9, 3, 64), (64, 32, 8, 128)])
def test_cuda_exact_kernel_in_half_precision(n, hq, hkv, d, context):
    from gorgon.kernels import cuda_ops

    exact = lambda *args, **kw: cuda_ops.tree_attention(*args, **kw, fast=False)
    _check(exact, n, hq, hkv, d, torch.bfloat16, context)


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n, hq, hkv, d", [c for c in GRID if c[0] in (2, 16, 128)])
def test_triton_tree_attention(n, hq, hkv, d, dtype, context):
    from gorgon.kernels.tree_attention import tree_attention

    _check(tree_attention, n, hq, hkv, d, dtype, context)


LAUNCHES = [  # the sweep's axes: row and slot tiles, warps, stages, split waves, partials' precision
    dict(block_m=128, block_n=128, num_warps=8),
    dict(block_m=128, block_n=64, num_warps=8, num_stages=3, waves=1),
    dict(block_m=64, block_n=128, num_warps=4, num_stages=2, waves=4),
    dict(min_split=128, half_partials=False),
    dict(min_split=128, pdl=False),
    dict(occupancy=False),  # split rounds sized by the estimate, not the driver's count
    dict(per_sm=1),  # one program an SM forced: 64-row blocks with no room for a split run unsplit
]


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])  # float32 tiles this big overflow smem
@pytest.mark.parametrize("n, hq, hkv, d", [(64, 32, 8, 128), (7, 9, 3, 64), (128, 9, 3, 64)])
def test_triton_tree_attention_launch_settings(n, hq, hkv, d, dtype, launch):
    from gorgon.kernels.tree_attention import Launch, tree_attention

    attend = lambda *args, **kw: tree_attention(*args, **kw, launch=Launch(**launch))
    _check(attend, n, hq, hkv, d, dtype, "long")


def test_resident_programs_are_counted_by_the_driver():
    """The split rounds are sized by the driver's count for the compiled kernel: asked, and at least one
    program an SM (0 would mean the question failed and the estimate was used silently)."""
    from gorgon.kernels import tree_attention as ta

    ta._resident.clear()
    _check(ta.tree_attention, 16, 32, 8, 128, torch.bfloat16, "long")
    assert ta._resident and all(count >= 1 for count in ta._resident.values())


# the opt-in wgmma kernels (plain and warp-specialized): their default launches over the grid's tree sizes,
# then deeper pipelines, two warp groups and more splits on the big trees
WGMMA_CASES = [
    (c, dict(wgmma=True, warp_specialize=ws)) for c in GRID if c[0] in (1, 7, 64, 128) for ws in (0, 1)
]
WGMMA_CASES += [
    (c, launch)
    for c in [(64, 32, 8, 128), (128, 9, 3, 64)]
    for launch in (
        dict(wgmma=True, block_m=128, num_stages=3),
        dict(wgmma=True, min_split=64, waves=4),
        dict(wgmma=True, block_n=32, num_stages=4, maxnreg=168),
        dict(wgmma=True, warp_specialize=True, num_stages=3),
        dict(wgmma=True, warp_specialize=True, min_split=64, waves=4),
    )
]


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


@pytest.mark.skipif(not _hopper(), reason="wgmma needs a Hopper GPU (sm_90)")
@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape, launch", WGMMA_CASES)
def test_wgmma_tree_attention(shape, launch, dtype, context):
    from gorgon.kernels.tree_attention import Launch, _wgmma_capable, tree_attention

    n, hq, hkv, d = shape
    assert _wgmma_capable(torch.empty(1, 1, 1, d, device="cuda", dtype=dtype))
    attend = lambda *args, **kw: tree_attention(*args, **kw, launch=Launch(**launch))
    _check(attend, n, hq, hkv, d, dtype, context)


# the dynamic-tile kernel (opt-in): at most 64 rows a KV head, every GQA ratio and head size, its two tile
# shapes and a deeper ring; the long contexts (spans past DYNAMIC_MIN_SPAN) with an empty row among them
DYNAMIC_CASES = [(c, {}) for c in GRID if c[0] * c[1] // c[2] <= 64]
DYNAMIC_CASES += [(c, launch) for c in [(16, 32, 8, 128), (7, 9, 3, 64)]
                  for launch in (dict(block_n=64, num_stages=2), dict(block_n=128, num_stages=3),
                                 dict(half_partials=True))]  # fmt: skip


@pytest.mark.skipif(not _hopper(), reason="wgmma needs a Hopper GPU (sm_90)")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape, launch", DYNAMIC_CASES)
def test_dynamic_tree_attention(shape, launch, dtype, monkeypatch):
    """Equal to float64 three calls in a row (each launch's last claim must zero its counters for the
    next), and the counters zero after them; the plan must take the dynamic kernel for these shapes."""
    from gorgon.kernels import tree_attention as ta

    n, hq, hkv, d = shape
    q = torch.empty(1, n, hq, d, device="cuda", dtype=dtype)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    monkeypatch.setattr(ta, "DYNAMIC_PROGRAMS", (2, 1000))  # every grid of the test's batch of four trees
    plan = ta._dynamic_plan(q, ta.Launch(dynamic=True), n * hq // hkv, len(KINDS) * hkv, 4100, sms)
    assert plan >= 2
    attend = lambda *args, **kw: ta.tree_attention(*args, **kw, launch=ta.Launch(dynamic=True, **launch))
    for _ in range(3):
        _check(attend, n, hq, hkv, d, dtype, "long")
    assert int(ta.block_counters(torch.device("cuda", torch.cuda.current_device())).abs().sum()) == 0


def test_dynamic_tree_attention_is_opt_in(monkeypatch):
    from gorgon.kernels import tree_attention as ta

    q = torch.empty(1, 16, 32, 128, device="cuda", dtype=torch.bfloat16)
    monkeypatch.delenv("GORGON_DYNAMIC", raising=False)
    assert ta._dynamic_plan(q, ta.Launch(), 64, 8, 8192, 132) == 0
    assert ta._dynamic_plan(q, ta.Launch(dynamic=False), 64, 8, 8192, 132) == 0
    assert ta._dynamic_plan(q.float(), ta.Launch(dynamic=True), 64, 8, 8192, 132) == 0  # no float32 form
    assert ta._dynamic_plan(q, ta.Launch(dynamic=True), 128, 8, 8192, 132) == 0  # two row blocks a head
    assert ta._dynamic_plan(q, ta.Launch(dynamic=True), 64, 8, 1000, 132) == 0  # a short context
    assert ta._dynamic_plan(q, ta.Launch(dynamic=True), 64, 64, 8192, 132) == 0  # one program a row block
    assert ta._dynamic_plan(q, ta.Launch(dynamic=True), 64, 3, 8192, 132) == 0  # 43 short programs a head
    if _hopper():
        assert ta._dynamic_plan(q, ta.Launch(dynamic=True), 64, 8, 8192, 132) == 15
        monkeypatch.setenv("GORGON_DYNAMIC", "1")
        assert ta._dynamic_plan(q, ta.Launch(), 64, 8, 8192, 132) == 15


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keep_path_kernels_match_the_reference(backend, dtype):
    import importlib

    from gorgon.config import ModelConfig
    from gorgon.kv_cache import KVCache

    ops = importlib.import_module(
        {"triton": "gorgon.kernels.triton_ops", "cuda": "gorgon.kernels.cuda_ops"}[backend]
    )
    cfg = ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=3, num_heads=4, num_kv_heads=2,
                      head_dim=64)  # fmt: skip
    caches = [KVCache(cfg, 4, 300, torch.device("cuda"), dtype) for _ in range(2)]
    caches[0].data.copy_(torch.randn_like(caches[0].data))
    caches[1].data.copy_(caches[0].data)
    committed = torch.tensor([3, 10, 0, 200], device="cuda")
    path = torch.tensor([[2, 3, 4, 0], [1, 0, 0, 0], [1, 5, 6, 9], [1, 2, 3, 4]], device="cuda")
    accepted = torch.tensor([3, 0, 4, 4], device="cuda")
    caches[0].keep_path(committed, path, accepted)
    caches[1].keep_path(committed, path, accepted, ops)
    torch.testing.assert_close(caches[1].data, caches[0].data, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["triton", "cuda", "cuda_fused", "triton_dynamic"])
@pytest.mark.parametrize(
    "n, context", [(1, "long"), (16, "long"), (64, "short"), (64, "long"), (128, "long")]
)
def test_tree_attention_replays_in_a_cuda_graph(backend, n, context, monkeypatch):
    """Captured once and replayed on new queries and keys: split, merged (by a merge kernel, or by the
    kernel itself: Triton's at N=1, CUDA's where asked), and equal to float64 on the new inputs. The
    dynamic-tile kernel's claim counters and the fused merges' arrival counters must be zero again after
    every replay."""
    from gorgon.kernels import cuda_ops
    from gorgon.kernels.tree_attention import Launch, tree_attention

    if backend.startswith("cuda") and not cuda_ops.buildable():
        pytest.skip("no nvcc / ninja here")
    if backend == "triton_dynamic":
        if not _hopper():
            pytest.skip("the dynamic-tile kernel needs a Hopper GPU (sm_90)")
        from gorgon.kernels import tree_attention as ta

        monkeypatch.setattr(ta, "DYNAMIC_PROGRAMS", (2, 1000))  # the test's grids: 32 row blocks
        monkeypatch.setattr(ta, "DYNAMIC_MIN_SPAN", 64)
    attend = {
        "triton": tree_attention,
        "cuda": cuda_ops.tree_attention,
        "cuda_fused": lambda *args, **kw: cuda_ops.tree_attention(*args, **kw, fuse=True),
        "triton_dynamic": lambda *args, **kw: tree_attention(*args, **kw, launch=Launch(dynamic=True)),
    }[backend]
    q, k, v, tree, kv_len, _ = _case(n, 32, 8, 128, torch.bfloat16, context)
    out = torch.empty_like(q)
    attend(q, k, v, tree.committed, tree.bits, kv_len, 128**-0.5, out=out)  # compiled before capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        attend(q, k, v, tree.committed, tree.bits, kv_len, 128**-0.5, out=out)
    for _ in range(3):
        q2, k2, v2, tree2, _, ref = _case(n, 32, 8, 128, torch.bfloat16, context)
        q.copy_(q2), k.copy_(k2), v.copy_(v2), tree.bits.copy_(tree2.bits)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out.double(), ref, **TOL[torch.bfloat16])
    if backend != "triton":  # the dynamic claims' and the CUDA kernels' fused merge's counters
        from gorgon.kernels.attention import block_counters

        assert int(block_counters(q.device).abs().sum()) == 0
