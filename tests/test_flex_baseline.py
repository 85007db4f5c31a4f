"""The FlexAttention baseline of `gorgon bench kernels` computes tree attention (CPU, eager, float32)."""

from __future__ import annotations

import pytest
import torch

from gorgon.bench.kernels import flex_tree_attention
from gorgon.kernels import AttentionMeta, TreeMask, reference
from gorgon.spec.tree import ancestor_matrix


@pytest.mark.parametrize("n", [1, 7, 16])
def test_flex_mask_mod_matches_the_reference(n):
    g = torch.Generator().manual_seed(n)
    b, hq, hkv, d, p = 2, 6, 2, 16, 40
    parents = torch.stack([torch.tensor([0] + [int(torch.randint(0, i, (), generator=g)) for i in range(1, n)])
                           for _ in range(b)])  # fmt: skip
    tree = TreeMask(torch.tensor([p, 23]), ancestor_matrix(parents))
    q = torch.randn(b, n, hq, d, generator=g)
    k = torch.randn(b, p + n, hkv, d, generator=g)
    v = torch.randn(b, p + n, hkv, d, generator=g)
    run = flex_tree_attention(q, k, v, tree, d**-0.5, compiled=False)
    if run is None:
        pytest.skip("FlexAttention does not run on this torch build")
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long), p + n, tree=tree)
    torch.testing.assert_close(run(), reference.attend(q, k, v, meta, d**-0.5), rtol=1e-4, atol=1e-4)
