# Round 4 (2026-11-27j): the staged ws partial stores (live warps only) and the TMA descriptor prefetch, each
# taken out of the new build, against it and the old build.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in ship old tl ns np; do timeout 240 python3 scripts/.build_one.py $v 2>&1 | tail -2 & done
wait
echo "[$(date +%T)] run"
timeout 450 python3 scripts/.ws_timeline.py $OUT 2>&1 | grep -v '"check"' | tail -80
grep '"check"' $OUT/ws_timeline.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] done"
