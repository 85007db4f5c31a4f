set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
timeout 150 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 5 --cold \
  --launch '{}' --launch '{"waves":1}' --name balance_ws_ab \
  --case llama-3-8b,3,128,8192 --case llama-3-8b,2,128,8192 --case llama-3-8b,4,64,8192 \
  --case smollm2-135m,8,128,8192 2>&1 | grep -v '^{' | tail -6
echo "[$(date +%T)] done"
