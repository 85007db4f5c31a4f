"""Which study build fails where (2026-11-28 round 3): each build's kernels forced on a few shapes against
the normal-policy build, in its own process with CUDA_LAUNCH_BLOCKING=1. usage: .crash.py NAME"""
import importlib.util
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case
from gorgon.kernels import cuda_ops

spec = importlib.util.spec_from_file_location("p", Path(__file__).parent / ".l2probe.py")
p = importlib.util.module_from_spec(spec)
spec.loader.exec_module(p)
cuda_ops.extension()
ref_ext, ext = p.get("noev"), p.get(sys.argv[1])
shapes = [((9, 3, 64), 1, 16, 256), ((32, 8, 128), 1, 16, 2048), ((32, 8, 128), 1, 64, 512), ((32, 8, 128), 1, 16, 8192)]
for (hq, hkv, d), batch, n, pp in shapes:
    q, k, v, tree = _case(batch, n, pp, hq, hkv, d, torch.bfloat16)
    for kernel in ("mma4", "mma8", "wgmma4", "wgmma8", "ws"):
        code = cuda_ops.KERNELS[kernel]
        args = (code, q, k, v, tree.committed, tree.bits, pp + n, d**-0.5)
        try:
            a = cuda_ops.launch(ref_ext, *args, torch.empty_like(q))
            b = cuda_ops.launch(ext, *args, torch.empty_like(q))
            err = (a.float() - b.float()).abs().max().item()
            print(sys.argv[1], kernel, (hq, batch, n, pp), "max diff", err, flush=True)
        except Exception as e:  # noqa: BLE001
            print(sys.argv[1], kernel, (hq, batch, n, pp), "FAILED", str(e)[:100], flush=True)
            sys.exit(1)
