# Round 7 (2026-11-27j): GPU tests of the CUDA kernels (every form, graphs) at the final code.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] graphs"
timeout 120 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests.log
echo "[$(date +%T)] cuda kernels"
timeout 300 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] memcheck ws"
GORGON_CUDA_KERNEL=ws timeout 50 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -3 | tee -a $OUT/sanitizer.log
echo "[$(date +%T)] done"
