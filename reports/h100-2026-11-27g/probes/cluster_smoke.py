"""A few cluster-form calls checked against float64, small enough for compute-sanitizer."""
import torch

from gorgon.kernels import AttentionMeta, TreeMask, cuda_ops, reference
from gorgon.spec.tree import ancestor_matrix

for (b, n, hq, hkv, d, p, size) in [(1, 16, 32, 8, 128, 1000, 16), (2, 7, 9, 3, 64, 300, 3), (1, 64, 32, 8, 128, 700, 4)]:
    parents = torch.tensor([0] + [(i - 1) // 4 for i in range(1, n)]).expand(b, -1)
    tree = TreeMask(torch.full((b,), p).cuda(), ancestor_matrix(parents).cuda())
    q = torch.randn(b, n, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, p + n, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, p + n, hkv, d, device="cuda", dtype=torch.bfloat16)
    out = torch.full_like(q, float("nan"))
    cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, out=out, kernel="cluster", splits=size)
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device="cuda"), p + n, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, d**-0.5)
    print(b, n, hq, hkv, d, p, size, "max err", (out.double() - ref).abs().max().item())
