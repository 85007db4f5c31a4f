#!/usr/bin/env bash
# One GPU round in one call: environment, GPU tests, decode-step timings, the plain-decoding benchmark.
# Expects PYTHONPATH and GORGON_MODEL set as the README's GPU notes say; writes its tables under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gorgon-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"
python3 -m pytest -q tests/test_gpu.py tests/test_triton_ops.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
python3 -m gorgon.bench.step --kernels ${KERNELS:-triton,torch} --out "$OUT/step.jsonl" 2>&1 | grep -v '"top"' | tee "$OUT/step.log"
[ -n "${PROBE:-}" ] && python3 -m gorgon.bench.gemv_probe 2>&1 | tee "$OUT/gemv_probe.log"
python3 -m gorgon.bench.plain --device cuda --out "$OUT" 2>&1 | grep -v "it/s]" | tee "$OUT/plain.log"
