# Round 3 (2026-11-28): which study build crashed; ship (evict-first) against noev on more shapes; GPU tests
# and memcheck at the final code.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship noev qs cpev; do timeout 200 python3 scripts/.l2probe.py $OUT build $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] crash"
for v in qs cpev; do CUDA_LAUNCH_BLOCKING=1 timeout 60 python3 scripts/.crash.py $v 2>&1 | grep -v Warn | tail -22 | tee -a $OUT/crash.log; done
echo "[$(date +%T)] ab"
ROUND=3 timeout 120 python3 scripts/.l2probe.py $OUT 2>&1 | grep -v '"check"' | tail -20
grep '"check"' $OUT/l2probe.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] graphs"
timeout 100 python3 -m pytest -q tests/test_kernels_gpu.py -k "graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/graph_tests.log
echo "[$(date +%T)] cuda kernels"
timeout 200 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and not graph" -p no:cacheprovider 2>&1 | tail -3 | tee $OUT/cuda_tests.log
echo "[$(date +%T)] memcheck ws"
GORGON_CUDA_KERNEL=ws timeout 50 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -3 | tee -a $OUT/sanitizer.log
echo "[$(date +%T)] done"
