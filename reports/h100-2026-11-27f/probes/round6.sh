# Round 6 (2026-11-27f): after the model transfer. The ws kernel with its descriptors made once (shipped)
# against the build without (GORGON_WS_DESC_ONCE=0), its GPU tests, then tokens/s end to end on the
# default model per attention backend (reference, triton, cuda), one call.
set -u
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
python3 scripts/cuda_variants.py --variant "desc0=-DGORGON_WS_DESC_ONCE=0" --build-only > /tmp/build_desc0.log 2>&1 &
python3 scripts/cuda_variants.py --variant "desc1=" --build-only > /tmp/build_desc1.log 2>&1 &
echo "[$(date +%T)] tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_kernels_gpu.py \
  -k "cuda and (ws or graph or auto or plan)" 2>&1 | tail -2 | tee $OUT/cuda_tests.log
wait
echo "[$(date +%T)] A/B"
timeout 170 python3 scripts/cuda_variants.py --out $OUT --repeats 3 --variant "desc1=" --variant "desc0=-DGORGON_WS_DESC_ONCE=0" \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 --case llama-3-8b,8,128,8192 \
  --case llama-3-8b,8,1,8192 --case llama-3-8b,8,16,8192 --case smollm2-135m,8,128,8192 --case smollm2-135m,8,64,8192 2>&1 | tail -12
mkdir -p $OUT/backends
for be in reference triton cuda; do
  echo "[$(date +%T)] backend $be"
  GORGON_ATTENTION=$be timeout 110 python3 -m gorgon bench --device cuda --prompts summarization,code \
    --max-tokens 128 --repeats 2 --methods "plain,ngram:k=8,eagle" --out "$OUT/backends/$be" --no-progress \
    2>&1 | tail -14 | tee $OUT/backends/$be.log
done
tar czf $OUT/backends.tgz -C $OUT backends && rm -rf $OUT/backends
echo "[$(date +%T)] done"
