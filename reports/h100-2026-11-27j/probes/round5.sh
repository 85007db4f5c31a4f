# Round 5 (2026-11-27j): Q loaded before the producer starts (GORGON_WS_EARLY_Q; lateq: after), the staged
# partial stores only where both groups compute at head_dim 128; against the old build.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship old tl lq; do timeout 240 python3 scripts/.build_one.py $v 2>&1 | tail -2 & done
wait
echo "[$(date +%T)] run"
timeout 450 python3 scripts/.ws_timeline.py $OUT 2>&1 | grep -v '"check"' | tail -80
grep '"check"' $OUT/ws_timeline.jsonl | grep -v '"differs": {}' | head

for kernel in ws mma4; do
  echo "[$(date +%T)] memcheck $kernel"
  GORGON_CUDA_KERNEL=$kernel timeout 50 compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -3 | tee -a $OUT/sanitizer.log
done
echo "[$(date +%T)] racecheck ws"
GORGON_CUDA_KERNEL=ws timeout 50 compute-sanitizer --tool racecheck --print-limit 20 python3 scripts/cuda_smoke.py 2>&1 | tail -3 | tee -a $OUT/sanitizer.log
echo "[$(date +%T)] done"
