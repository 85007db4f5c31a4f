# Round 4 (2026-11-27h): the Triton kernel's warps, tile and stages at batch 1, N=1 and 16 (Llama-3-8B heads, P=8192).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
KNOBS=1 timeout 400 python3 scripts/.oversub.py $OUT 2>&1 | tail -30
