# Round 1 (2026-11-27j): a timeline of the CUDA ws kernel at N=1 and 16 and same-run times of the CUDA
# forms, two ws study builds (TMA descriptor prefetch, 3 stages) and Triton.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo build
timeout 200 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3 &
timeout 200 python3 -c "
import sys; sys.argv=['x']; sys.path.insert(0,'scripts')
import importlib.util as u; s=u.spec_from_file_location('t','scripts/.ws_timeline.py'); t=u.module_from_spec(s); s.loader.exec_module(t)
from pathlib import Path; from gorgon.kernels import cuda_ops; import os, torch
os.environ['TORCH_CUDA_ARCH_LIST']='9.0a'
cuda_ops.build('gorgon_tl', t.timeline_sources(Path('build/study/timeline')), 'tl', ['-lineinfo'])" 2>&1 | tail -3 &
timeout 200 python3 -c "
import importlib.util as u; s=u.spec_from_file_location('t','scripts/.ws_timeline.py'); t=u.module_from_spec(s); s.loader.exec_module(t)
from pathlib import Path; from gorgon.kernels import cuda_ops; import os
os.environ['TORCH_CUDA_ARCH_LIST']='9.0a'
cuda_ops.build('gorgon_pf', t.prefetch_sources(Path('build/study/prefetch')), 'pf', ['-lineinfo'])" 2>&1 | tail -3 &
timeout 200 python3 -c "
from gorgon.kernels import cuda_ops; import os
os.environ['TORCH_CUDA_ARCH_LIST']='9.0a'
cuda_ops.build('gorgon_s3', cuda_ops.SOURCES, 's3', ['-lineinfo', '-DGORGON_WS_STAGES=3'])" 2>&1 | tail -3 &
wait
echo "[$(date +%T)] timeline"
timeout 300 python3 scripts/.ws_timeline.py $OUT 2>&1 | tail -40
echo "[$(date +%T)] done"
