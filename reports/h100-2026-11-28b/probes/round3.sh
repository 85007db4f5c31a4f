# Round 3 (2026-11-28b): Q by TMA, blocked partials, bulk partial stores in the ws kernel (study builds).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 scripts/.qbab.py $OUT build ship 2>&1 | tail -1
for v in blk bulk tmaq both; do timeout 240 python3 scripts/.qbab.py $OUT build $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] run"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,64,8192],["llama",2,16,8192],
["llama",8,16,8192],["llama",8,64,8192],["smollm2",8,16,8192],["llama",1,16,2048],["llama",1,128,8192],
["smollm2",1,64,8192]]'
timeout 330 python3 scripts/.qbab.py $OUT 2>&1 | cut -c1-300 | tail -60
echo "[$(date +%T)] done"
