set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
mkdir -p $OUT/tests $OUT/kbench
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] tests"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_kernels_gpu.py \
  -k "cuda and (ws or graph or split_counts or exact or auto or plan or names)" 2>&1 | tail -3 | tee $OUT/tests/cuda_tests.log
echo "[$(date +%T)] memcheck"
SMOKE_CASES=3 timeout 80 compute-sanitizer --tool memcheck python3 reports/h100-2026-11-27e/probes/ws_smoke.py 2>&1 | tail -12 | tee $OUT/tests/memcheck.log
echo "[$(date +%T)] kernels"
timeout 190 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | tail -3
for be in reference triton cuda; do
  echo "[$(date +%T)] cost $be"
  GORGON_ATTENTION=$be timeout 60 python3 -m gorgon bench cost --shape llama-3-8b --context 8192 --out "$OUT/kbench" 2>&1 | tail -4
done
echo "[$(date +%T)] done"
