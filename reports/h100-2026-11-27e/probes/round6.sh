# After the second review mend (shared epilogue write_row, cuda_ops.build / launch): build, the
# tensor-core kernels' bf16 tests (every form but wmma; direct and split epilogues), one study build.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] tests"
timeout 95 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_kernels_gpu.py \
  -k "cuda and (bfloat16 or graph or auto or plan) and not wmma" 2>&1 | tail -2 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] study build"
timeout 45 python3 scripts/cuda_variants.py --out $OUT --repeats 1 --variant "pp1=-DGORGON_WS_PINGPONG=1" \
  --case llama-3-8b,2,64,2048 2>&1 | tail -3
echo "[$(date +%T)] done"
