set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] balance A/B"
timeout 200 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 5 --cold \
  --launch '{}' --launch '{"waves":1}' --name balance_ab \
  --case smollm2-135m,8,128,8192 --case smollm2-135m,8,128,2048 --case smollm2-135m,16,64,8192 \
  --case llama-3-8b,2,128,8192 --case llama-3-8b,4,64,8192 --case llama-3-8b,3,128,8192 \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,128,8192 2>&1 | grep -v '^{' | tail -12
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py \
  -k "shape35- or shape48- or shape51- or (launch_settings and (launch0 or launch6)) or resident" 2>&1 | tail -3 \
  | tee $OUT/kernel_tests.log
echo "[$(date +%T)] done"
