# Round 4 (2026-11-28c): half-tile splits streaming whole tiles from the tile boundary (ship), against whole-tile
# splits (t128) and the build before (old); the ws GPU tests, graph tests and memcheck.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
echo "[$(date +%T)] build"
timeout 240 python3 scripts/.tmab.py $OUT build old 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q tests/test_kernels_gpu.py -k "half_tiles or (cuda and ws and not graph)" -p no:cacheprovider 2>&1 | tail -4 | tee $OUT/ws_tests.log
wait
echo "[$(date +%T)] ab"
export VARIANTS="old t128 ship"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",2,16,8192],["llama",1,64,8192],["llama",1,16,4096],
["llama",4,16,8192],["llama",1,16,8192],["llama",1,1,8192]]'
timeout 200 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-400 | tail -30
echo "[$(date +%T)] graph tests"
timeout 80 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests.log
echo "[$(date +%T)] memcheck"
GORGON_CUDA_KERNEL=ws timeout 60 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -4 | tee $OUT/sanitizer.log
echo "[$(date +%T)] done"
