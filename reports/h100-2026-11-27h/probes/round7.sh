# Round 7 (2026-11-27h): the shipped dynamic-tile kernel (opt-in): its GPU tests and the graph tests, the
# default Triton tests as a regression check, then the sweep that sets DYNAMIC_MIN_SPAN.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] tests"
timeout 240 python3 -m pytest -q tests/test_kernels_gpu.py -k "dynamic or graph or (triton_tree_attention and not launch)" -p no:cacheprovider -x 2>&1 | tail -6 | tee $OUT/tests.log
echo "[$(date +%T)] sweep"
timeout 300 python3 scripts/.dyn_sweep.py $OUT 2>&1 | tail -40
echo "[$(date +%T)] done"
