# The committed code after the review mends (c1d5343): build, the ws kernel's tests, one A/B case.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] tests"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_kernels_gpu.py \
  -k "cuda and (ws or graph or auto or plan)" 2>&1 | tail -2 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] A/B"
timeout 100 python3 scripts/cuda_variants.py --out $OUT --repeats 5 --variant "shipped=" \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case smollm2-135m,8,128,8192 2>&1 | tail -8
echo "[$(date +%T)] done"
