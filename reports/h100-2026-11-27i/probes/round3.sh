# Round 3 (2026-11-27i): the kernel table with the fused merges on by default (Triton's and, at N=1,
# the CUDA kernels'), then which CUDA kernel serves N=1 best with its fused merge.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/kbench
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] kernels"
timeout 430 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | grep "llama-3-8b | 1 | .* | 8192\|llama-3-8b | 1 | 64 | 2048" | grep -v "sdpa\|flex"
echo "[$(date +%T)] n1"
timeout 100 python3 scripts/.n1_kernels.py $OUT 2>&1 | grep "^|"
echo "[$(date +%T)] done"
