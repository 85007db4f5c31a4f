# Round 7 (2026-11-27g): after the model transfer. Tokens/s per backend on the default model with the
# shipped code (the short-context plan of 8b5247a and the mma kernel's lean softmax), (the kernel table follows in round 8).
set -u
export PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
mkdir -p $OUT/backends
for be in reference triton cuda; do
  echo "[$(date +%T)] backend $be"
  GORGON_ATTENTION=$be timeout 110 python3 -m gorgon bench --device cuda --prompts summarization,code \
    --max-tokens 128 --repeats 2 --methods "plain,ngram:k=8,eagle" --out "$OUT/backends/$be" --no-progress \
    2>&1 | grep "^| all" | tee $OUT/backends/$be.log
done
tar czf $OUT/backends.tgz -C $OUT backends && rm -rf $OUT/backends
echo "[$(date +%T)] done"
