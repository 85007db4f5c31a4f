# Round 7 (2026-11-27f): the full kernel table and the verify step per backend with the ws kernel's
# descriptors made once (a9834f6), and the CUDA forms at the default model's engine shapes (SmolLM2 heads,
# batch 1, short contexts, warm L2), where the cuda backend's tokens/s trailed triton's in round 6.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
mkdir -p $OUT/kbench $OUT/small
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] small"
timeout 150 python3 scripts/tree_attention_sweep.py --out $OUT/small --cuda --launch '{}' --repeats 3 \
  --case smollm2-135m,1,16,256 --case smollm2-135m,1,32,256 --case smollm2-135m,1,64,256 \
  --case smollm2-135m,1,16,768 --case smollm2-135m,1,32,768 --case smollm2-135m,1,64,768 2>&1 | grep -v '^{' | tail -14
echo "[$(date +%T)] kernels"
timeout 200 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | tail -3
for be in reference triton cuda; do
  echo "[$(date +%T)] cost $be"
  GORGON_ATTENTION=$be timeout 60 python3 -m gorgon bench cost --shape llama-3-8b --context 8192 --out "$OUT/kbench" 2>&1 | tail -4
done
tar czf $OUT/round7.tgz -C $OUT kbench small && rm -rf $OUT/kbench $OUT/small
echo "[$(date +%T)] done"
