# Round 4 (2026-11-27i): the GPU kernel tests after the CUDA kernels' fused merge (every CUDA kernel, every
# dtype and context; graph replays of every backend), then the Llama-3-8B-shape verify step and decode at
# 8192 tokens on the CUDA backend.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/cost_cuda $OUT/cost_triton
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] graphs"
timeout 120 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests.log
echo "[$(date +%T)] cuda kernels"
timeout 240 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/cuda_tests.log
for be in cuda triton; do
  echo "[$(date +%T)] cost $be"
  GORGON_ATTENTION=$be timeout 80 python3 -m gorgon bench cost --shape llama-3-8b --context 8192 --out "$OUT/cost_$be" 2>&1 | tail -6
done
echo "[$(date +%T)] done"
