# Round 5 (2026-11-28): the final rule (16-byte partial stores at 17-64 rows, head_dim 128 only): ws GPU
# tests, then the A/B against the build before round 4 (evict-first, 4-byte stores), memcheck.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship old; do timeout 200 python3 scripts/.l2probe.py $OUT build $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] ws tests"
timeout 60 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and ws and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/ws_tests.log
echo "[$(date +%T)] ab"
ROUND=4 timeout 60 python3 scripts/.l2probe.py $OUT 2>&1 | grep -v '"check"' | cut -c1-150 | tail -20
grep '"check"' $OUT/l2probe.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] memcheck ws"
GORGON_CUDA_KERNEL=ws timeout 30 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -3 | tee -a $OUT/sanitizer.log
echo "[$(date +%T)] done"
