# Round 2 (2026-11-27g): the cluster form with 2 blocks an SM (3 and 2 stages) against 4 stages; the
# CUDA kernels' fixed cost and cost a tile against the Triton kernel's (unsplit).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/ab2
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] tile cost"
timeout 150 python3 scripts/.tile_cost.py $OUT/tile_cost.jsonl 2>&1 | tail -3
echo "[$(date +%T)] ab"
timeout 330 python3 scripts/.cluster_ab.py $OUT/ab2 --set focus --stages 3 --stages 2 2>&1 | grep -v "^{" | tail -5
echo "[$(date +%T)] done"
