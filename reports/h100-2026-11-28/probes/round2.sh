# Round 2 (2026-11-28): evict-first shipped against normal; quad stores, merge W=1, cp.async evict; timelines.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
echo "[$(date +%T)] build"
for v in ship noev qs mw1 cpev tl tlns tlqs; do timeout 240 python3 scripts/.l2probe.py $OUT build $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] probe"
timeout 420 python3 scripts/.l2probe.py $OUT 2>&1 | grep -v '"check"' | tail -60
grep '"check"' $OUT/l2probe.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] done"
