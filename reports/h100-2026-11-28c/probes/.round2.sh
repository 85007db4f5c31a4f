# Round 2 (2026-11-28c): the ws kernel's splits in half tiles. Builds, GPU tests, the A/B (old / t128 / ship),
# memcheck.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 240 python3 scripts/.tmab.py $OUT build old 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q tests/test_kernels_gpu.py -k "half_tiles or (cuda and ws and not graph)" -p no:cacheprovider 2>&1 | tail -8 | tee $OUT/ws_tests.log
wait
echo "[$(date +%T)] ab"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,64,8192],["llama",1,128,8192],["llama",1,16,4096],
["llama",2,16,8192],["llama",4,16,8192],["llama",8,1,8192],["llama",8,64,8192],["smollm2",8,64,8192],["llama",1,16,8192]]'
timeout 260 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-400 | tail -40
echo "[$(date +%T)] memcheck"
GORGON_CUDA_KERNEL=ws timeout 60 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -5 | tee $OUT/sanitizer.log
echo "[$(date +%T)] done"
