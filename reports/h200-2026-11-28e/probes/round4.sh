# Round 4 (2026-11-28e): PDL merges (GORGON_PDL=1: two warps a merged row since b3247b7) for the mma/wgmma
# kernels' shapes, against the default policy (off there); the same build.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 scripts/.tmab.py $OUT build ship 2>&1 | tail -1
echo "[$(date +%T)] ab"
export VARIANTS="auto auto1" REPEATS=7 CASES='[["smollm2",1,1,8192],["smollm2",1,16,8192],["smollm2",1,16,2048],["smollm2",1,16,768],
["smollm2",1,32,8192],["llama",1,1,2048],["llama",1,16,2048],["llama",1,16,512],["llama",1,64,512],["smollm2",1,16,8192]]'
timeout 300 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-300 | grep -v '"triton"' | tail -30
echo "[$(date +%T)] done"
