set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -2
echo "[$(date +%T)] CUDA plan changes not yet timed"
timeout 200 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 5 --cold --cuda --cuda-splits 2 \
  --launch '{}' --name cuda_balance_more \
  --case llama-3-8b,12,16,8192 --case smollm2-135m,10,128,8192 --case llama-3-8b,7,64,8192 \
  --case llama-3-8b,4,128,8192 --case llama-3-8b,2,128,4096 2>&1 | grep -v '^{' | tail -8
echo "[$(date +%T)] done"
