# Round 1 (2026-11-27g): the cluster form: build, GPU tests, memcheck, A/B at batch 1.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/ab
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] smoke"
python3 scripts/.cluster_smoke.py 2>&1 | tail -5
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q -x tests/test_kernels_gpu.py -k "cluster" -p no:cacheprovider 2>&1 | tail -5
echo "[$(date +%T)] ab"
timeout 250 python3 scripts/.cluster_ab.py $OUT/ab --set b1 --set small 2>&1 | grep -v "^{" | tail -5
echo "[$(date +%T)] memcheck"
timeout 90 compute-sanitizer --tool memcheck python3 scripts/.cluster_smoke.py > $OUT/memcheck.log 2>&1; echo "rc $?"; tail -4 $OUT/memcheck.log
echo "[$(date +%T)] done"
