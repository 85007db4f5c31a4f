# Round 2 (2026-11-27j): Q staged with every load in flight (load_q), against the old build; timeline of
# the new ws kernel and its merge; merge loads 4 and 8.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship old tl ml4 ml8; do timeout 240 python3 scripts/.build_one.py $v 2>&1 | tail -2 & done
wait
echo "[$(date +%T)] run"
timeout 330 python3 scripts/.ws_timeline.py $OUT 2>&1 | grep -v '"check"' | tail -60
grep '"check"' $OUT/ws_timeline.jsonl | grep -v '"max_abs": 0.0' | head
echo "[$(date +%T)] done"
