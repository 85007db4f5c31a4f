# Round 2 (2026-11-27i): the fused merge with the weights shuffled from the lanes that loaded the
# log-sum-exps (no second read): fused tests, then the A/B at N <= 2.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 300 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] fused tests"
timeout 100 python3 -m pytest -q tests/test_kernels_gpu.py -k "fused_merge or (split_counts and (ws or wgmma4))" -p no:cacheprovider -x 2>&1 | tail -3 | tee $OUT/fused_tests.log
echo "[$(date +%T)] ab"
ONLY_N1=1 timeout 150 python3 scripts/.cuda_fuse_ab.py $OUT 2>&1 | grep "^|"
echo "[$(date +%T)] done"
