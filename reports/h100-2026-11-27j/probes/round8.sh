# Round 8 (2026-11-27j): the ws kernel with kEarlyQ a template against the old and late-Q builds; the
# kernel table at the final code.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/kbench
echo "[$(date +%T)] build"
for v in ship old tl lq; do timeout 240 python3 scripts/.build_one.py $v 2>&1 | tail -1 & done
wait
echo "[$(date +%T)] ab"
timeout 100 python3 scripts/.ws_timeline.py $OUT 2>&1 | grep -v '"check"' | tail -20
grep '"check"' $OUT/ws_timeline.jsonl | grep -v '"differs": {}' | head
echo "[$(date +%T)] kernels"
timeout 260 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | grep "llama-3-8b | 1 | .* | 8192\|llama-3-8b | 1 | 64 | 2048" | grep -v "sdpa\|flex"
echo "[$(date +%T)] done"
