# Round 3 (2026-11-27g): the deep form (wgmma4, one block an SM, deeper pipeline) at four stage counts:
# GPU tests of the shipped build, then the A/B.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/ab
V="--variant d43=4,3 --variant d64=6,4 --variant d85=8,5 --variant d106=10,6"
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
for v in d43=4,3 d64=6,4 d85=8,5 d106=10,6; do python3 scripts/.deep_ab.py x --variant $v --build-only > $OUT/build_$v.log 2>&1 & done
timeout 200 python3 -m pytest -q -x tests/test_kernels_gpu.py -k "deep" -p no:cacheprovider 2>&1 | tail -3
wait
echo "[$(date +%T)] ab"
timeout 330 python3 scripts/.deep_ab.py $OUT/ab $V 2>&1 | grep -v "^{" | tail -5
echo "[$(date +%T)] done"
