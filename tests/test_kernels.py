"""The reference attention and KV write against a direct float64 computation."""

from __future__ import annotations

import pytest
import torch

from gorgon.kernels import attention, write_kv


def _naive(q, k, v, mask, scale):
    b, t, hq, d = q.shape
    group = hq // k.shape[2]
    out = torch.empty(b, t, hq, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            kk, vv = k[bi, :, h // group].double(), v[bi, :, h // group].double()
            scores = q[bi, :, h].double() @ kk.T * scale
            scores = scores.masked_fill(~mask[bi], float("-inf"))
            out[bi, :, h] = torch.softmax(scores, -1) @ vv
    return out


@pytest.mark.parametrize("hq, hkv", [(4, 4), (6, 2), (8, 2)])
def test_attention_with_random_masks(hq, hkv):
    g = torch.Generator().manual_seed(hq * 10 + hkv)
    b, t, s, d = 2, 5, 23, 16
    q = torch.randn(b, t, hq, d, generator=g)
    k, v = torch.randn(b, s, hkv, d, generator=g), torch.randn(b, s, hkv, d, generator=g)
    mask = torch.rand(b, t, s, generator=g) < 0.5
    mask[..., 0] = True  # every query sees at least one slot
    out = attention(q, k, v, mask, d**-0.5)
    torch.testing.assert_close(out.double(), _naive(q, k, v, mask, d**-0.5), rtol=1e-5, atol=1e-5)


def test_write_kv_puts_each_row_at_its_slots():
    cache_k, cache_v = torch.full((2, 8, 2, 4), -1.0), torch.full((2, 8, 2, 4), -1.0)
    k, v = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4)
    slots = torch.tensor([[0, 1, 2], [5, 6, 7]])
    write_kv(cache_k, cache_v, k, v, slots)
    torch.testing.assert_close(cache_k[0, :3], k[0])
    torch.testing.assert_close(cache_v[1, 5:], v[1])
    assert (cache_k[0, 3:] == -1).all() and (cache_k[1, :5] == -1).all()


@pytest.mark.parametrize("m", [1, 2, 5, 6, 7, 13])
@pytest.mark.parametrize("n", [48, 50])  # 50: the last panel is partly padding
def test_packed_cpu_kernel_matches_linear(m, n):
    from gorgon.kernels import host_blas

    assert host_blas.library() is not None, "the CPU kernel should build here (gcc, AVX2)"
    w, b = torch.randn(n, 72), torch.randn(n)
    x = torch.randn(m, 72)
    packed = host_blas.pack(w)
    torch.testing.assert_close(host_blas.packed_linear(x, packed, n, b), torch.nn.functional.linear(x, w, b))
    x3 = torch.randn(2, m, 72)
    torch.testing.assert_close(host_blas.packed_linear(x3, packed, n, None), x3 @ w.T)


def test_numpy_fallback_matches_linear():
    from gorgon.kernels import host_blas

    lin = torch.nn.Linear(40, 24)
    x = torch.randn(3, 40)
    expected = lin(x)
    host_blas.transpose_storage(lin)
    torch.testing.assert_close(host_blas.numpy_linear(x, lin.weight, lin.bias), expected)


def test_registry_picks_and_forces_backends(monkeypatch):
    from gorgon.errors import GorgonError
    from gorgon.kernels.registry import choose

    cpu = torch.device("cpu")
    monkeypatch.delenv("GORGON_ATTENTION", raising=False)
    monkeypatch.delenv("GORGON_KERNELS", raising=False)
    assert choose(cpu)[0] == "reference"
    monkeypatch.setenv("GORGON_ATTENTION", "triton")
    with pytest.raises(GorgonError, match="needs a CUDA device"):
        choose(cpu)
    monkeypatch.setenv("GORGON_ATTENTION", "cuda")
    with pytest.raises(GorgonError, match="needs a CUDA device"):
        choose(cpu)
    monkeypatch.setenv("GORGON_ATTENTION", "magic")
    with pytest.raises(GorgonError, match="not a backend"):
        choose(cpu)
    monkeypatch.setenv("GORGON_ATTENTION", "reference")
    assert choose(cpu)[0] == "reference"


def test_backend_in_stats(tiny_llm):
    from gorgon import SamplingParams

    out = tiny_llm.generate("hi", SamplingParams(max_tokens=2, temperature=0.0))[0]
    assert out.stats["backend"] == "reference"


@pytest.mark.parametrize("tree_split", [True, False])
@pytest.mark.parametrize("programs", [1, 8, 32, 64, 131])
@pytest.mark.parametrize("span", [1, 200, 2048, 8192])
def test_splits_run_in_one_round(programs, span, tree_split):
    """The split rule both tree-attention kernels use: the splits cover the context in tiles, and with the
    tree's split where the kernel has one they fit one round of programs wherever more than one split is
    allowed."""
    from gorgon.kernels.attention import split_in_rounds

    slots, min_split, tile = 264, 256, 64
    split = split_in_rounds(span, programs, slots, min_split, tile, tree_split)
    nsplit = -(-span // split)
    assert split % tile == 0 and split * nsplit >= span
    if nsplit > 1:
        assert (nsplit + tree_split) * programs <= slots
        assert nsplit <= -(-span // min_split)  # no more splits than min_split-slot pieces
