# Round 6 (2026-11-27h): the dynamic-tile kernel's timeline, and two programs an SM.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
timeout 400 python3 scripts/.dyn_ab2.py $OUT 2>&1 | grep -v "^\s*$" | tail -30
