# Round 3 (2026-11-27h): more, shorter splits than one round holds (oversubscription), Triton kernel, batch 1.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
timeout 400 python3 scripts/.oversub.py $OUT 2>&1 | tail -30
