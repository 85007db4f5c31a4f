set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build shipped"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
VARIANTS=("base=" "pp1=-DGORGON_WS_PINGPONG=1" "qreg=-DGORGON_WS_QREG=1" "st3=-DGORGON_WS_STAGES=3" "lazy=-DGORGON_WS_LAZY_RESCALE=1" "l2x128=-DGORGON_WS_L2=128" "st3lazy=-DGORGON_WS_STAGES=3 -DGORGON_WS_LAZY_RESCALE=1")
echo "[$(date +%T)] build variants"
for v in "${VARIANTS[@]}"; do
  python3 scripts/cuda_variants.py --variant "$v" --build-only > /tmp/build_${v%%=*}.log 2>&1 &
done
wait
echo "[$(date +%T)] tests (shipped)"
timeout 90 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels_gpu.py -k "cuda and ws" 2>&1 | tail -2 | tee $OUT/ws_tests.log
echo "[$(date +%T)] variant checks"
ARGS=()
for v in "${VARIANTS[@]}"; do
  if timeout 60 python3 scripts/cuda_variants.py --variant "$v" --repeats 1 --out /tmp \
      --case llama-3-8b,2,128,1100 --case smollm2-135m,3,64,700 --case llama-3-8b,1,16,300 > /tmp/check_${v%%=*}.log 2>&1; then
    ARGS+=(--variant "$v")
  else echo "  FAILED $v"; tail -3 /tmp/check_${v%%=*}.log; fi
done
echo "[$(date +%T)] variants"
timeout 330 python3 scripts/cuda_variants.py --out $OUT --repeats 5 "${ARGS[@]}" \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 \
  --case llama-3-8b,8,128,8192 --case llama-3-8b,4,64,8192 --case llama-3-8b,2,128,8192 --case llama-3-8b,8,64,2048 \
  --case llama-3-8b,1,1,8192 --case llama-3-8b,1,16,8192 --case llama-3-8b,8,1,8192 --case llama-3-8b,8,16,8192 \
  --case smollm2-135m,8,128,8192 --case smollm2-135m,8,64,8192 --case smollm2-135m,1,64,8192 2>&1 | tail -20
echo "[$(date +%T)] done"
