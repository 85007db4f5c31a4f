# Round 5 (2026-11-28e): the new default policy (PDL merges for the wgmma kernels over 16 rows): the wgmma and
# mma GPU tests and the graph tests under it, and a short A/B against GORGON_PDL=0 (auto0).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 120 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -1
echo "[$(date +%T)] wgmma tests (default policy)"
timeout 90 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and wgmma and not graph" -p no:cacheprovider 2>&1 | tail -1 | tee $OUT/wgmma_tests.log
echo "[$(date +%T)] graph tests (default policy)"
timeout 60 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -1 | tee $OUT/graph_tests.log
echo "[$(date +%T)] ab"
export VARIANTS="auto auto0" REPEATS=5 CASES='[["smollm2",1,16,768],["llama",1,1,2048],["llama",1,16,512],["smollm2",1,64,8192]]'
timeout 60 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-300 | grep -v '"triton"' | tail -12
echo "[$(date +%T)] done"
