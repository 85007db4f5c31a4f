set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -2
echo "[$(date +%T)] memcheck on balanced-split plans"
cat > /tmp/bal.py <<'PY'
import torch
from gorgon.kernels import TreeMask, cuda_ops
from gorgon.spec.tree import ancestor_matrix
for b, n, hq, hkv, d, p in [(2, 128, 32, 8, 128, 4500), (3, 128, 32, 8, 128, 8300), (8, 128, 9, 3, 64, 3000)]:
    parents = torch.tensor([[0] + [(i - 1) // 3 for i in range(1, n)]] * b)
    tree = TreeMask(torch.tensor([p - 7 * i for i in range(b)]).cuda(), ancestor_matrix(parents).cuda())
    q = torch.randn(b, n, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, p + n, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    name = cuda_ops._auto_kernel(q, hkv)
    print(b, n, p, name, cuda_ops.split_plan(q, k, p + n, cuda_ops.KERNELS[name]))
    out = cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5)
    ref = cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, fast=False)
    print("max diff vs exact kernel", (out.float() - ref.float()).abs().max().item())
torch.cuda.synchronize()
PY
timeout 120 compute-sanitizer --tool memcheck --print-limit 20 python3 /tmp/bal.py 2>&1 | tail -10 | tee $OUT/memcheck_balance.log
echo "[$(date +%T)] CUDA kernel tests"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_cuda_ops.py -k "cuda" 2>&1 | tail -4 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] done"
