# Round 3 (2026-11-28c): why half-tile splits were slower: their last half tile loaded whole (full) against
# alone (ship), and the build before (old).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
echo "[$(date +%T)] build"
timeout 240 python3 scripts/.tmab.py $OUT build old 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build full 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
export VARIANTS="old t128 ship full"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",2,16,8192],["llama",1,16,8192]]'
timeout 200 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-400 | tail -30
echo "[$(date +%T)] done"
