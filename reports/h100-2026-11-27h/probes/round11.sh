# Round 11 (2026-11-27h), after the model transfer: the fused merge on by default. Every Triton GPU test
# (kernels, graphs, the dynamic kernel), the Triton ops on the GPU, and the engine's GPU tests (graph
# replays equal to eager steps, also with the tree kernel as decode attention).
set -u
export PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/env.txt
echo "[$(date +%T)] engine"
timeout 150 python3 -m pytest -q tests/test_gpu.py -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/gpu_tests.log
echo "[$(date +%T)] graphs"
timeout 150 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph or dynamic_tree_attention_is" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests.log
echo "[$(date +%T)] ops"
timeout 80 python3 -m pytest -q tests/test_triton_ops.py -k "tree_attention or partials" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/ops_tests.log
echo "[$(date +%T)] kernels"
timeout 180 python3 -m pytest -q tests/test_kernels_gpu.py -k "test_triton_tree_attention and not launch" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/kernel_tests.log
echo "[$(date +%T)] done"
