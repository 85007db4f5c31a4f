# Round 1 (2026-11-28c): the ws kernel's tree merge. Builds, its GPU tests, the A/B (old / ship / tm),
# the ws tests in mode 0, graph tests, memcheck.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 240 python3 scripts/.tmab.py $OUT build old 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
echo "[$(date +%T)] tree merge tests"
timeout 120 python3 -m pytest -q -x tests/test_kernels_gpu.py -k "tree_merge" -p no:cacheprovider 2>&1 | tail -15 | tee $OUT/tm_tests.log
wait
echo "[$(date +%T)] ab"
export VARIANTS="ship old tm"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,64,8192],["llama",1,16,2048],["llama",2,16,8192],
["llama",1,128,8192],["smollm2",1,16,8192],["llama",4,16,8192],["llama",1,16,8192]]'
timeout 200 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-700 | tail -40
echo "[$(date +%T)] ws tests"
timeout 90 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and ws and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/ws_tests.log
echo "[$(date +%T)] memcheck"
GORGON_CUDA_KERNEL=ws timeout 60 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -5 | tee $OUT/sanitizer.log
echo "[$(date +%T)] done"
