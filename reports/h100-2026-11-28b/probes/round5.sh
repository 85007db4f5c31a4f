# Round 5 (2026-11-28b): the kernel table at the shipped code.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 150 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension(); print('built')" 2>&1 | tail -1
echo "[$(date +%T)] table"
timeout 330 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | tail -3
echo "[$(date +%T)] done"
