# Round 6 (2026-11-27j): early Q only where both groups compute, ws at N=16 where it streams long enough;
# A/B against the old build and the late-Q build, then the kernel table.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/kbench
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship old tl lq; do timeout 240 python3 scripts/.build_one.py $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] ab"
timeout 200 python3 scripts/.ws_timeline.py $OUT 2>&1 | grep -v '"check"' | tail -40
grep '"check"' $OUT/ws_timeline.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] kernels"
timeout 300 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | grep "llama-3-8b | 1 | .* | 8192\|llama-3-8b | 1 | 64 | 2048" | grep -v "sdpa\|flex"
echo "[$(date +%T)] done"
