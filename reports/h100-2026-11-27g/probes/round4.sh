# Round 4b (2026-11-27g): the wide form (wgmma4 in 128-slot tiles; O in two halves at head_dim 128 too):
# GPU tests, then the A/B with a variant at one more stage.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/ab
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
python3 scripts/.wide_ab.py x --variant w43=4,3 --build-only > $OUT/build.log 2>&1 &
timeout 200 python3 -m pytest -q tests/test_kernels_gpu.py -k "wide" -p no:cacheprovider 2>&1 | tail -4
wait
echo "[$(date +%T)] ab"
timeout 360 python3 scripts/.wide_ab.py $OUT/ab --variant w43=4,3 2>&1 | grep -v "^{" | tail -5
echo "[$(date +%T)] done"
