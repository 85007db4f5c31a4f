# Round 2 (2026-11-28e): merge_w2 (auto, flag code compiled out), the flag-waiting merge with sleeps (fls), fl against HEAD (old).
# Builds, the A/B, the ws GPU tests and graph tests of the shipped build, memcheck.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in old fl fls; do timeout 240 python3 scripts/.tmab.py $OUT build $v 2>&1 | tail -1 & done
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
export VARIANTS="auto fls fl old" REPEATS=5 CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,8,8192],
["llama",1,32,8192],["llama",1,64,8192],["llama",2,16,8192],["llama",1,16,4096],["llama",1,16,8192]]'
timeout 270 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-300 | grep -v '"triton"' | tail -60
echo "[$(date +%T)] ws tests (shipped build, default policy)"
timeout 70 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and ws and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/ws_tests.log
echo "[$(date +%T)] graph tests, GORGON_PDL=1"
GORGON_PDL=1 timeout 60 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests_pdl1.log
echo "[$(date +%T)] memcheck"
GORGON_CUDA_KERNEL=ws timeout 70 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -5 | tee $OUT/sanitizer.log
echo "[$(date +%T)] done"
