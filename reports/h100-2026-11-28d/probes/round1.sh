# Round 1 (2026-11-28d): strided context splits and the merge's carveout. Builds, the A/B, the ws tests
# with the strided build, memcheck of the strided build.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
cp $OUT/../spacing.jsonl $OUT/ 2>/dev/null
echo "[$(date +%T)] build"
for v in old str cv both; do timeout 240 python3 scripts/.tmab.py $OUT build $v 2>&1 | tail -1 & done
timeout 240 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",1,64,8192],["llama",2,16,8192],["llama",1,16,2048],
["smollm2",1,16,8192],["llama",8,16,8192],["llama",1,16,8192]]'
timeout 300 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-700 | tail -50
echo "[$(date +%T)] done"
