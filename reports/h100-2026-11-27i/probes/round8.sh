# Round 8 (2026-11-27i): compute-sanitizer memcheck (and racecheck) of the CUDA kernels with the fused
# merge (scripts/cuda_smoke.py now runs split shapes fused too): the ws and wgmma4 forms on Hopper.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
echo "[$(date +%T)] build"
timeout 80 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
for kernel in ws wgmma4 mma4; do
  echo "[$(date +%T)] memcheck $kernel"
  GORGON_CUDA_KERNEL=$kernel timeout 40 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -4 | tee -a $OUT/sanitizer.log
done
echo "[$(date +%T)] racecheck ws"
GORGON_CUDA_KERNEL=ws timeout 40 compute-sanitizer --tool racecheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -4 | tee -a $OUT/sanitizer.log
echo "[$(date +%T)] done"
