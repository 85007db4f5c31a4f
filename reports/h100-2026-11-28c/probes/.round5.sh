# Round 5 (2026-11-28c): dynamic tiles in the ws kernel (reports/h100-2026-11-28b/probes/ws_dynamic.diff):
# dyn (as many splits as one round holds), dyn128 (the shipped split count), dyn0 (macro off), old (HEAD).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
echo "[$(date +%T)] build"
timeout 240 python3 scripts/.tmab.py $OUT build old 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build dyn0 2>&1 | tail -1 &
timeout 240 python3 scripts/.tmab.py $OUT build dyn 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
export VARIANTS="old dyn0 dyn dyn128"
export CASES='[["llama",1,16,8192],["llama",1,1,8192],["llama",2,16,8192],["llama",1,8,8192],["llama",1,64,8192],
["llama",4,16,8192],["llama",1,16,8192],["llama",1,1,8192]]'
timeout 260 python3 scripts/.tmab.py $OUT 2>&1 | cut -c1-400 | tail -40
echo "[$(date +%T)] done"
