# Round 5 (2026-11-27h): the dynamic-tile Gluon kernel (study): correctness against the Triton kernel, then
# the A/B at batch 1, Llama-3-8B heads, P=8192.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
timeout 450 python3 scripts/.dyn_ab.py $OUT 2>&1 | grep -v "^\s*$" | tail -40
