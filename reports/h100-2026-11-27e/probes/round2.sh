set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build shipped"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
VARIANTS=("exp2f=-DGORGON_WS_FAST_SOFTMAX=0" "fast=" "pingpong=-DGORGON_WS_PINGPONG=1" "bn64=-DGORGON_WS_BN=64" "bn64pp=-DGORGON_WS_BN=64 -DGORGON_WS_PINGPONG=1")
echo "[$(date +%T)] build variants"
for v in "${VARIANTS[@]}"; do
  python3 scripts/cuda_variants.py --variant "$v" --build-only > $OUT/build_${v%%=*}.log 2>&1 &
done
wait
echo "[$(date +%T)] smoke + tests (shipped: fast softmax)"
timeout 60 python3 reports/h100-2026-11-27e/probes/ws_smoke.py 2>&1 | tail -12 | tee $OUT/smoke.log
timeout 90 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels_gpu.py -k "cuda and ws" 2>&1 | tail -3 | tee $OUT/ws_tests.log
echo "[$(date +%T)] variant checks"
ARGS=()
for v in "${VARIANTS[@]}"; do
  mkdir -p /tmp/chk
  if timeout 60 python3 scripts/cuda_variants.py --variant "$v" --repeats 1 --out /tmp/chk \
      --case llama-3-8b,2,128,1100 --case smollm2-135m,3,64,700 --case llama-3-8b,1,16,300 > $OUT/check_${v%%=*}.log 2>&1; then
    ARGS+=(--variant "$v"); echo "  ok $v"
  else echo "  FAILED $v"; tail -3 $OUT/check_${v%%=*}.log; fi
done
echo "[$(date +%T)] variants"
timeout 300 python3 scripts/cuda_variants.py --out $OUT --repeats 5 "${ARGS[@]}" \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 \
  --case llama-3-8b,8,128,8192 --case llama-3-8b,4,64,8192 --case llama-3-8b,8,16,8192 \
  --case smollm2-135m,8,128,8192 --case smollm2-135m,8,64,8192 2>&1 | tail -16
echo "[$(date +%T)] done"
