set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -2
echo "[$(date +%T)] batch-1 split counts, Triton and CUDA"
timeout 300 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 5 --cold --cuda --cuda-splits 8,12,16,24 \
  --launch '{}' --launch '{"splits":10}' --launch '{"splits":16}' --launch '{"splits":16,"tree_split":false}' \
  --launch '{"splits":20}' --launch '{"block_n":64}' --launch '{"block_n":64,"splits":24}' --name b1_splits \
  --case llama-3-8b,1,1,8192 --case llama-3-8b,1,16,8192 --case llama-3-8b,1,64,8192 2>&1 | grep -v '^{' | tail -8
echo "[$(date +%T)] done"
