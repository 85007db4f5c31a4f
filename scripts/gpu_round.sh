#!/usr/bin/env bash
# One GPU round in one call: environment, GPU tests, then the benchmarks asked for, tables under $OUT.
# Expects PYTHONPATH and GORGON_MODEL set as the README's GPU notes say.
#   STEP=1 (decode-step timings), PROBE=1 (GEMV probe), PLAIN=1 (plain vs transformers), SPEC=1 (drafters,
#   verify cost), KBENCH=1 (tree-attention kernels); TESTS=0 skips the tests. Default: tests, step, plain.
set -uo pipefail
OUT=${OUT:-/tmp/gorgon-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"
if [ "${TESTS:-1}" = 1 ]; then
  python3 -m pytest -q ${TEST_FILES:-tests/test_gpu.py tests/test_triton_ops.py} -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/gpu_tests.log"
fi
if [ "${STEP:-1}" = 1 ]; then
  python3 -m gorgon.bench.step --kernels ${KERNELS:-triton,reference} --out "$OUT/step.jsonl" 2>&1 | grep -v '"top"' | tee "$OUT/step.log"
fi
if [ -n "${KBENCH:-}" ]; then python3 -m gorgon.bench.kernels --out "$OUT" ${KBENCH_QUICK:+--quick} 2>&1 | tail -60 | tee "$OUT/kernels.log"; fi
if [ -n "${PROBE:-}" ]; then python3 -m gorgon.bench.gemv_probe 2>&1 | tee "$OUT/gemv_probe.log"; fi
if [ "${PLAIN:-1}" = 1 ]; then
  python3 -m gorgon.bench.plain --device cuda --out "$OUT" 2>&1 | grep -v "it/s]" | tee "$OUT/plain.log"
fi
if [ -n "${SPEC:-}" ]; then
  python3 -m gorgon.bench.spec --device cuda --verify-cost --out "$OUT" \
    --methods "${SPEC_METHODS:-plain,ngram:k=3,ngram:k=4,ngram:k=8,ngram:k=4:b=3,draft:layers=8:k=3,draft:layers=15:k=4}" \
    2>&1 | tee "$OUT/spec.log"
fi
