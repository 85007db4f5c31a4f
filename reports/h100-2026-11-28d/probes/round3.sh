# Round 3 (2026-11-28d): PDL merges triggered by the ws kernel at its start or loop end; warm again. Builds and the A/B.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in old pdl1 pdl2 warm; do timeout 240 python3 scripts/.tmab.py $OUT build $v 2>&1 | tail -1 & done
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,64,8192],["llama",2,16,8192],["llama",1,8,8192],
["llama",8,16,8192],["llama",1,16,8192]]'
timeout 300 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-700 | tail -50
echo "[$(date +%T)] done"
