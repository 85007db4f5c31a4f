# Round 3 (2026-11-28e): the kernel table at HEAD (two warps a merged row with PDL merges) on the H200, and
# the ws GPU tests of the shipped source.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 150 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension(); print('built')" 2>&1 | tail -1
echo "[$(date +%T)] ws tests"
timeout 60 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and ws and not graph" -p no:cacheprovider 2>&1 | tail -1 | tee $OUT/ws_tests.log
echo "[$(date +%T)] table"
timeout 330 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | tail -3
grep -E "llama-3-8b \| 1 \| (1|16|64|128) \| 8192 \| (cuda|triton) " $OUT/kbench/benchmark.md
echo "[$(date +%T)] done"
