set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -2
echo "[$(date +%T)] CUDA balance A/B"
timeout 330 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 5 --cold --cuda --cuda-splits 2,3,4,6 \
  --launch '{}' --name cuda_balance \
  --case llama-3-8b,2,128,8192 --case llama-3-8b,3,128,8192 --case llama-3-8b,4,64,8192 \
  --case llama-3-8b,4,64,2048 --case llama-3-8b,6,64,8192 --case llama-3-8b,8,64,8192 \
  --case llama-3-8b,8,64,2048 --case smollm2-135m,8,128,8192 --case smollm2-135m,8,128,2048 \
  --case smollm2-135m,16,64,8192 --case llama-3-8b,8,128,8192 2>&1 | grep -v '^{' | tail -16
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_cuda_ops.py -k "cuda and (wgmma4 or split or auto)" 2>&1 | tail -4 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] done"
