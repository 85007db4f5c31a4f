# Round 1 (2026-11-27i): the CUDA kernels' fused merge: build, its GPU tests, the A/B, then regression
# tests of the CUDA kernels (the merge kernel now shares merge_row) and the graph replays.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 300 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] fused tests"
timeout 120 python3 -m pytest -q tests/test_kernels_gpu.py -k "fused_merge" -p no:cacheprovider -x 2>&1 | tail -4 | tee $OUT/fused_tests.log
echo "[$(date +%T)] ab"
timeout 150 python3 scripts/.cuda_fuse_ab.py $OUT 2>&1 | grep "^|" 
echo "[$(date +%T)] regression"
timeout 100 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph or (test_cuda_tree_attention and long and (ws or wgmma4 or mma4)) or split_counts" -p no:cacheprovider 2>&1 | tail -4 | tee $OUT/regression.log
echo "[$(date +%T)] done"
