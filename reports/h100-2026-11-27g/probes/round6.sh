# Round 6 (2026-11-27g): the mma kernel's lean softmax: every CUDA GPU test, then the A/B against the
# build before it (HEAD's sources, carried in build/before).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/ab
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
(python3 -c "
from pathlib import Path
from gorgon.kernels import cuda_ops
cuda_ops.extension()
cuda_ops.build('gorgon_cuda_before', [Path('build/before/tree_attention.cu'), Path('build/before/binding.cpp')], 'before', ['-lineinfo'])
" > $OUT/build_before.log 2>&1) &
timeout 220 python3 -m pytest -q tests/test_kernels_gpu.py tests/test_cuda_ops.py -k "cuda" -p no:cacheprovider 2>&1 | tail -4 | tee $OUT/cuda_tests.log
wait
echo "[$(date +%T)] ab"
timeout 300 python3 scripts/.softmax_ab.py $OUT/ab build/before 2>&1 | grep -v "^{" | tail -5
echo "[$(date +%T)] done"
