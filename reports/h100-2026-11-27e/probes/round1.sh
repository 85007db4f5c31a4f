set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] smoke"
timeout 60 python3 reports/h100-2026-11-27e/probes/ws_smoke.py 2>&1 | tail -20 | tee $OUT/smoke.log
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels_gpu.py -k "cuda and ws" 2>&1 | tail -15 | tee $OUT/ws_tests.log
echo "[$(date +%T)] sweep"
timeout 240 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 5 --cold --cuda \
  --launch '{}' --name ws_ab \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 \
  --case llama-3-8b,8,128,8192 --case llama-3-8b,8,64,2048 --case llama-3-8b,4,64,8192 \
  --case llama-3-8b,2,128,8192 --case smollm2-135m,8,128,8192 --case smollm2-135m,8,64,8192 2>&1 | grep -v '^{' | tail -14
echo "[$(date +%T)] done"
