# Round 8 (2026-11-27f): after the model transfer. The span-aware kernel choice (ws only with enough
# context to stream): the CUDA host tests and graph tests, the default model's verify shapes again (the
# "CUDA us" column is now the automatic choice), and tokens/s per backend on the default model.
set -u
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] tests"
timeout 80 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_kernels_gpu.py \
  -k "cuda and (graph or auto or plan or names or (wgmma4 and bfloat16))" 2>&1 | tail -2 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] small"
timeout 100 python3 scripts/tree_attention_sweep.py --out $OUT --cuda --launch '{}' --repeats 3 \
  --case smollm2-135m,1,16,256 --case smollm2-135m,1,64,256 --case smollm2-135m,1,64,768 \
  --case llama-3-8b,1,64,512 --case llama-3-8b,1,64,2048 2>&1 | grep -v '^{' | tail -9
mkdir -p $OUT/backends
for be in reference triton cuda; do
  echo "[$(date +%T)] backend $be"
  GORGON_ATTENTION=$be timeout 100 python3 -m gorgon bench --device cuda --prompts summarization,code \
    --max-tokens 128 --repeats 2 --methods "plain,ngram:k=8,eagle" --out "$OUT/backends/$be" --no-progress \
    2>&1 | grep "^| all" | tee $OUT/backends/$be.log
done
tar czf $OUT/backends.tgz -C $OUT backends && rm -rf $OUT/backends
echo "[$(date +%T)] done"
