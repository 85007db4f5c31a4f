# Round 5 (2026-11-27f): the ws kernel with its softmax kept ahead of the wait for P V t-1 (a branch on
# the row sums ends its basic block; ptxas hoisted the wait above it), as macro variants.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build shipped"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
VARIANTS=("base=" "fence=-DGORGON_WS_SOFTMAX_FENCE=1" "fence_st3=-DGORGON_WS_SOFTMAX_FENCE=1 -DGORGON_WS_STAGES=3" "fence_pp1=-DGORGON_WS_SOFTMAX_FENCE=1 -DGORGON_WS_PINGPONG=1" "fence_pp0=-DGORGON_WS_SOFTMAX_FENCE=1 -DGORGON_WS_PINGPONG=0")
echo "[$(date +%T)] build variants"
for v in "${VARIANTS[@]}"; do
  python3 scripts/cuda_variants.py --variant "$v" --build-only > /tmp/build_${v%%=*}.log 2>&1 &
done
wait
echo "[$(date +%T)] variant checks"
ARGS=()
for v in "${VARIANTS[@]}"; do
  if timeout 60 python3 scripts/cuda_variants.py --variant "$v" --repeats 1 --out /tmp \
      --case llama-3-8b,2,128,1100 --case smollm2-135m,3,64,700 --case llama-3-8b,1,16,300 \
      --case llama-3-8b,1,7,5000 --case llama-3-8b,3,64,177 > /tmp/check_${v%%=*}.log 2>&1; then
    ARGS+=(--variant "$v")
  else echo "  FAILED $v"; tail -3 /tmp/check_${v%%=*}.log; tail -5 /tmp/build_${v%%=*}.log; fi
done
echo "[$(date +%T)] variants"
timeout 400 python3 scripts/cuda_variants.py --out $OUT --repeats 5 "${ARGS[@]}" \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 \
  --case llama-3-8b,8,128,8192 --case llama-3-8b,4,64,8192 --case llama-3-8b,2,128,8192 --case llama-3-8b,8,64,2048 \
  --case llama-3-8b,1,1,8192 --case llama-3-8b,1,16,8192 --case llama-3-8b,8,1,8192 --case llama-3-8b,8,16,8192 \
  --case smollm2-135m,8,128,8192 --case smollm2-135m,8,64,8192 --case smollm2-135m,1,64,8192 2>&1 | tail -20
echo "[$(date +%T)] done"
