# Round 3 (2026-11-27j): load_q without a division a vector, the merge kernel at four loads where one pass
# covers the splits, the ws partials through shared memory; against the old build on 13 cases.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship old tl pf; do timeout 240 python3 scripts/.build_one.py $v 2>&1 | tail -2 & done
wait
echo "[$(date +%T)] run"
timeout 450 python3 scripts/.ws_timeline.py $OUT 2>&1 | grep -v '"check"' | tail -80
grep '"check"' $OUT/ws_timeline.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] done"
