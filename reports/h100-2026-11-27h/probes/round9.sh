# Round 9 (2026-11-27h): the kernel table with the shipped code (triton_dynamic where the opt-in kernel
# runs), then the Llama-3-8B-shape verify step at 8192 tokens on the Triton backend, default and with
# GORGON_DYNAMIC=1 (trees of 16 tokens or fewer take the dynamic kernel).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/kbench $OUT/cost_default $OUT/cost_dynamic
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] kernels"
timeout 420 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | tail -3
for mode in default dynamic; do
  echo "[$(date +%T)] cost $mode"
  GORGON_DYNAMIC=$([ $mode = dynamic ] && echo 1 || echo 0) GORGON_ATTENTION=triton timeout 70 python3 -m gorgon bench cost --shape llama-3-8b --context 8192 --out "$OUT/cost_$mode" 2>&1 | tail -5
done
echo "[$(date +%T)] done"
