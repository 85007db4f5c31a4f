# Round 4 (2026-11-28b): Q by TMA in the ws kernel at 17-64 rows, head_dim 128 (kTmaQ) against the build
# before (old); outputs against float64 and old; ws GPU tests, graph tests, memcheck.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 scripts/.qbab.py $OUT build ship 2>&1 | tail -1
timeout 200 python3 scripts/.qbab.py $OUT build old 2>&1 | tail -1 &
echo "[$(date +%T)] ws tests"
timeout 90 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and ws and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/ws_tests.log
wait
echo "[$(date +%T)] ab"
export VARIANTS="ship old"
export CASES='[["llama",1,16,8192],["llama",1,8,8192],["llama",1,5,8192],["llama",2,16,8192],["llama",4,16,8192],
["llama",8,16,8192],["llama",1,16,8192],["llama",1,1,8192]]'
timeout 150 python3 scripts/.qbab.py $OUT 2>&1 | cut -c1-600 | tail -30
echo "[$(date +%T)] graph tests"
timeout 80 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests.log
echo "[$(date +%T)] memcheck"
GORGON_CUDA_KERNEL=ws timeout 40 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -3 | tee $OUT/sanitizer.log
echo "[$(date +%T)] done"
