# Round 7 (2026-11-28c): timelines of the shipped ws kernel and of the half-tile form.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
echo "[$(date +%T)] build"
timeout 200 python3 scripts/.htl.py $OUT build whole 2>&1 | tail -2 &
timeout 200 python3 scripts/.htl.py $OUT build half 2>&1 | tail -2
wait
echo "[$(date +%T)] timelines"
timeout 150 python3 scripts/.htl.py $OUT 2>&1 | tail -12
echo "[$(date +%T)] done"
