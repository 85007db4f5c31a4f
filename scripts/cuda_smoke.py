"""Run every CUDA kernel once on small and split shapes, split ones merged by the merge kernel and by the
kernels themselves (fuse=True): what compute-sanitizer's memcheck watches."""

import torch

from gorgon.kernels import TreeMask, cuda_ops
from gorgon.spec.tree import ancestor_matrix

for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for n, hq, hkv, d, p in [
        (7, 9, 3, 64, 100),
        (64, 32, 8, 128, 3000),
        (128, 4, 4, 64, 700),
        (1, 32, 8, 128, 3000),
        (5, 32, 8, 128, 3000),  # 20 rows: the ws kernel's Q by TMA (kTmaQ)
        (64, 32, 8, 128, 200),  # unsplit (the output written directly)
    ]:
        parents = torch.tensor([[0] + [(i - 1) // 3 for i in range(1, n)]] * 2)
        tree = TreeMask(torch.tensor([p, p // 3]).cuda(), ancestor_matrix(parents).cuda())
        q = torch.randn(2, n, hq, d, device="cuda", dtype=dtype)
        k = torch.randn(2, p + n, hkv, d, device="cuda", dtype=dtype)
        v = torch.randn_like(k)
        for fast, fuse in ((None, False), (None, True), (False, False)):
            cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, fast=fast, fuse=fuse)
    data = torch.randn(2, 3, 4, 40, 2, 64, device="cuda", dtype=dtype)
    path = torch.tensor([[2, 3, 4, 0], [1, 0, 0, 0], [1, 5, 6, 9], [1, 2, 3, 4]], device="cuda")
    committed, n_accepted = torch.tensor([3, 10, 0, 20], device="cuda"), torch.tensor([3, 0, 4, 4]).cuda()
    cuda_ops.keep_path(data, committed, path, n_accepted)
torch.cuda.synchronize()
print("cuda kernels ran")
