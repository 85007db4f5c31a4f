# Round 2 (2026-11-28b): the cluster form's timeline; the ws kernel launched as clusters (wscl).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 200 python3 scripts/.cltl.py $OUT build ship 2>&1 | tail -1
for v in wscl tl; do timeout 200 python3 scripts/.cltl.py $OUT build $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] run"
export CASES='[["llama",1,1,8192,[0,8],["ws","ws8","wsclws8","ws4","wsclws4","wsc","wsc8"]],
["llama",1,16,8192,[0],["ws","ws8","wsclws8","wsc"]],
["llama",8,1,8192,[0],["ws","ws1","wsclws1","wsc"]]]'
timeout 300 python3 scripts/.cltl.py $OUT 2>&1 | cut -c1-400 | tail -30
echo "[$(date +%T)] done"
