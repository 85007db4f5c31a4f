# Round 1 (2026-11-27h): the timeline of one batch-1 call (Triton kernel + merge) against a read-only kernel
# over the same K/V, and the ws kernel forced at small N.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] timeline"
timeout 240 python3 scripts/.timeline.py $OUT/timeline 2>&1 | tail -20
echo "[$(date +%T)] ws_small"
timeout 200 python3 scripts/.ws_small.py $OUT 2>&1 | tail -50
echo "[$(date +%T)] done"
