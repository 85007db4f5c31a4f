set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -2
echo "[$(date +%T)] CUDA forced splits"
timeout 420 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 3 --cold --cuda --cuda-splits 1,2,3,4,6 \
  --launch '{}' --name cuda_splits \
  --case llama-3-8b,3,128,8192 --case llama-3-8b,6,64,8192 --case llama-3-8b,2,128,8192 \
  --case llama-3-8b,4,64,8192 --case smollm2-135m,8,128,8192 --case smollm2-135m,16,64,8192 \
  --case llama-3-8b,8,64,8192 2>&1 | grep -v '^{' | tail -14
echo "[$(date +%T)] done"
