# Round 10 (2026-11-27h): the fused merge (opt-in knob): its tests on the GPU, then the A/B.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] tests"
timeout 120 python3 -m pytest -q tests/test_triton_ops.py -k "fused_merge" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/tests.log
echo "[$(date +%T)] ab"
timeout 400 python3 scripts/.fuse_ab.py $OUT 2>&1 | tail -12
echo "[$(date +%T)] done"
