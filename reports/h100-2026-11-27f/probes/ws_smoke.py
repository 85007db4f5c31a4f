"""Cases through the ws kernel against float64, with and without 2-block clusters (a quick check)."""

import os

import torch

from gorgon.kernels import AttentionMeta, TreeMask, cuda_ops, reference
from gorgon.spec.tree import ancestor_matrix

torch.manual_seed(0)
for b, n, hq, hkv, d, ctx in [
    (2, 64, 32, 8, 128, [300, 1037]),
    (1, 7, 9, 3, 64, [5000]),
    (2, 128, 32, 8, 128, [0, 4100]),
    (3, 16, 4, 4, 128, [65, 200, 1]),
    (2, 64, 9, 3, 64, [700, 130]),  # two row blocks, the second with one consumer group
    (1, 128, 8, 2, 64, [3000]),  # four row blocks: two clusters
][: int(os.environ.get("SMOKE_CASES", 6))]:
    committed = torch.tensor(ctx[:b] + [ctx[-1]] * (b - len(ctx)))
    kv_len = int(committed.max()) + n
    parents = torch.stack([torch.tensor([0] + [(i - 1) // 4 for i in range(1, n)]) for _ in range(b)])
    tree = TreeMask(committed.cuda(), ancestor_matrix(parents).cuda())
    q = torch.randn(b, n, hq, d).cuda().bfloat16()
    k = torch.randn(b, kv_len + 3, hkv, d).cuda().bfloat16()
    v = torch.randn(b, kv_len + 3, hkv, d).cuda().bfloat16()
    meta = AttentionMeta(torch.zeros(b, n, dtype=torch.long, device="cuda"), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, d**-0.5)
    for splits in (None, 1, 3):
        out = torch.full_like(q, float("nan"))
        cuda_ops.tree_attention(
            q, k, v, tree.committed, tree.bits, kv_len, d**-0.5, out=out, kernel="ws", splits=splits
        )
        torch.cuda.synchronize()
        err = (out.double() - ref).abs().max().item()
        print(f"b{b} n{n} hq{hq} hkv{hkv} d{d} ctx{ctx} splits={splits}: max err {err:.3g}", flush=True)
