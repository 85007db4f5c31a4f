# Round 8 (2026-11-27h): the dynamic-tile kernel's GPU tests (every case, the opt-in rule, graph replays of
# every backend) after the rule change.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] tests"
timeout 500 python3 -m pytest -q tests/test_kernels_gpu.py -k "dynamic or graph" -p no:cacheprovider 2>&1 | tail -15 | tee $OUT/tests.log
echo "[$(date +%T)] done"
