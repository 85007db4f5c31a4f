# Round 6 (2026-11-28c): K/V views that start 0, 32, 64 or 128 slots into their allocation, shipped kernels.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
echo "[$(date +%T)] build"
timeout 200 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension(); print('built')" 2>&1 | tail -1
echo "[$(date +%T)] shift"
timeout 240 python3 scripts/.shift.py $OUT 2>&1 | tail -40
echo "[$(date +%T)] done"
