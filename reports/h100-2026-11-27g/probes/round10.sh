# Round 10 (2026-11-27g): the review mend (one online_softmax for the mma and ws kernels; the mma
# kernels' SASS reordered, same instructions): the CUDA GPU tests of the mma forms, then the A/B against
# the build before (HEAD's sources, carried in build/before), with the loads A/B's script.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
mkdir -p $OUT/ab
echo "[$(date +%T)] build"
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
(python3 -c "
from pathlib import Path
from gorgon.kernels import cuda_ops
cuda_ops.extension()
cuda_ops.build('gorgon_cuda_before2', [Path('build/before/tree_attention.cu'), Path('build/before/binding.cpp')], 'before2', ['-lineinfo'])
" > $OUT/build_before.log 2>&1) &
timeout 200 python3 -m pytest -q tests/test_kernels_gpu.py -k "cuda and (mma4 or mma8 or wgmma4 or wgmma8 or ws or graph)" -p no:cacheprovider 2>&1 | tail -4 | tee $OUT/cuda_tests.log
wait
echo "[$(date +%T)] ab"
timeout 200 python3 scripts/.mend_ab.py $OUT/ab build/before 2>&1 | grep -v "^{" | tail -5
echo "[$(date +%T)] done"
