# Round 6 (2026-11-28d): with PDL merges, warps a merged row (1, 2 against 4) and 11 splits against 13.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
for v in w1 w2; do timeout 200 python3 scripts/.tmab.py $OUT build $v 2>&1 | tail -1 & done
timeout 200 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
export REPEATS=5 CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,8,8192],["llama",2,16,8192],["llama",1,16,8192]]'
timeout 150 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-300 | grep -v '"triton"' | tail -30
echo "[$(date +%T)] done"
