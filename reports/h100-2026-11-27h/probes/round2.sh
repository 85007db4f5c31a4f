# Round 2 (2026-11-27h): timelines and the table's timing of the Triton kernel with PDL (trigger after the
# loop, as shipped, and at the program's start) and with the tree folded into the last context split.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] timeline2"
timeout 400 python3 scripts/.timeline.py $OUT 2 2>&1 | tail -60
echo "[$(date +%T)] done"
