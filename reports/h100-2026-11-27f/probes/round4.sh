# Round 4 (2026-11-27f): the CUDA ws kernel with 2-block clusters sharing each tile by TMA multicast
# (GORGON_WS_MULTICAST, on): smoke check, memcheck, its GPU tests, then an A/B against the build without.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
python3 scripts/cuda_variants.py --variant "nomc=-DGORGON_WS_MULTICAST=0" --build-only > /tmp/build_nomc.log 2>&1 &
python3 scripts/cuda_variants.py --variant "mc=" --build-only > /tmp/build_mc.log 2>&1 &
echo "[$(date +%T)] smoke"
timeout 60 python3 reports/h100-2026-11-27f/probes/ws_smoke.py 2>&1 | tail -20 | tee $OUT/smoke.log
echo "[$(date +%T)] memcheck"
timeout 90 compute-sanitizer --tool memcheck python3 reports/h100-2026-11-27f/probes/ws_smoke.py 2>&1 | tail -4 | tee $OUT/memcheck.log
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_kernels_gpu.py \
  -k "cuda and (ws or graph or auto or plan)" 2>&1 | tail -3 | tee $OUT/cuda_tests.log
wait
echo "[$(date +%T)] A/B"
timeout 240 python3 scripts/cuda_variants.py --out $OUT --repeats 5 --variant "mc=" --variant "nomc=-DGORGON_WS_MULTICAST=0" \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 \
  --case llama-3-8b,8,128,8192 --case llama-3-8b,4,64,8192 --case llama-3-8b,2,128,8192 --case llama-3-8b,8,64,2048 \
  --case llama-3-8b,1,64,2048 --case smollm2-135m,8,128,8192 --case smollm2-135m,8,64,8192 --case smollm2-135m,1,64,8192 2>&1 | tail -16
echo "[$(date +%T)] done"
