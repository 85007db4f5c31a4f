#!/usr/bin/env bash
# One GPU session in a few calls (each under the 10-minute limit), results under $OUT:
#   STAGE=train  self-distil and train the default model's heads (into $OUT/heads, copied to /tmp/heads);
#                STAGE=train1 then STAGE=train2 do the same in two calls (distil + Medusa, then EAGLE)
#   STAGE=cost   step cost per drafter shape (random weights) and the fused Triton ops' GPU tests
#   STAGE=check  the engine's GPU tests (tests/test_gpu.py) and the fused Triton ops on the GPU
#   STAGE=kernels tree attention on real shapes against float64, compute-sanitizer memcheck and racecheck
#                of the CUDA kernels, mma vs wmma accuracy and timing (scripts/cuda_compare.py)
#   STAGE=sweep  the Triton tree-attention kernel's launch settings against the memory floor (no model)
#   STAGE=ab     kernel tests, memcheck, same-run A/Bs of tree attention and of plain decode attention
#   STAGE=e2e_ab tokens/s with decode through the split-K or the tree kernel, PDL merges off or on
#   STAGE=flex   the kernel table with FlexAttention in every case (SHAPES=one head shape per call)
#   STAGE=ws     the warp-specialized wgmma kernel: tests, verify cost at 8192 tokens without and with it,
#                the full kernel table
#   STAGE=cuda8  the CUDA mma kernel in 8-warp blocks: tests, accuracy of every CUDA kernel, memcheck, then
#                the Triton and CUDA kernels (automatic, 4 and 8 warps) over the sweep's cases, warm and cold L2
#   STAGE=merge  what the 2026-11-27 merge change left unchecked: memcheck of the CUDA kernels (both merge
#                forms), the Triton and warp-specialized kernels' GPU tests, and a same-run A/B of
#                half-precision partials at batch 1 (no model needed)
#   STAGE=rounds what 2026-11-27b left open: the driver-count test, the Triton kernel tests that did not run,
#                and whether a second round of splits pays where one round cannot split (waves 2, cold A/B)
#   STAGE=kbench tree-attention microbenchmarks (the full table), verify cost per backend (Llama-3-8B shape)
#   STAGE=bench  the full harness: every method x every category against plain and transformers, plus
#                the end-to-end change per kernel backend; heads from /tmp/heads when present
# Expects PYTHONPATH and GORGON_MODEL set as the README's GPU notes say.
set -uo pipefail
OUT=${OUT:-/tmp/gorgon-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/env.txt" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$OUT/env.txt"

case "${STAGE:-check}" in
train|train1|train2)
  # train: everything in one call; train1 (distil + Medusa) and train2 (EAGLE) split it over two calls,
  # the data kept in /tmp/heads between them
  parts=distill,medusa,eagle; [ "$STAGE" = train1 ] && parts=distill,medusa; [ "$STAGE" = train2 ] && parts=eagle
  parts=${PARTS:-$parts}  # PARTS overrides, e.g. PARTS=distill,eagle
  # CONTINUE=N: train on from the heads in /tmp/heads (an earlier call's), batch order N: longer training
  # than one call allows, e.g. STAGE=train2 CONTINUE=1, then CONTINUE=2, ...
  # CONTINUE=shipped: train on from the heads shipped in the package (copied to /tmp/heads first)
  if [ "${CONTINUE:-}" = shipped ]; then
    mkdir -p /tmp/heads
    cp src/gorgon/heads/weights/smollm2-135m-instruct/{medusa,eagle}.{json,safetensors} /tmp/heads/
    CONTINUE=1
  fi
  if [ -n "${CONTINUE:-}" ]; then
    export SHUFFLE=$CONTINUE
    [ -f /tmp/heads/eagle.json ] && export EAGLE_INIT=/tmp/heads/eagle
    [ -f /tmp/heads/medusa.json ] && export MEDUSA_INIT=/tmp/heads/medusa
  fi
  log distill+train $parts
  mkdir -p "$OUT/heads" /tmp/heads
  [ -f /tmp/heads/distill.safetensors ] && cp /tmp/heads/distill.safetensors "$OUT/heads/"
  OUT="$OUT/heads" DEVICE=cuda SAMPLES=${SAMPLES:-8000} BATCH=256 MAX_TOKENS=256 EPOCHS_MEDUSA=20 EPOCHS_EAGLE=20 \
    TPB=16384 TASKS=${TASKS:-0} MEDUSA_SECONDS=${MEDUSA_SECONDS:-110} EAGLE_SECONDS=${EAGLE_SECONDS:-270} NO_BENCH=1 PARTS=$parts \
    bash scripts/train_heads.sh 2>&1 | grep -v "it/s]$" | tail -60 | tee -a "$OUT/train.log"
  mv "$OUT/heads/distill.safetensors" /tmp/heads/ 2>/dev/null
  cp "$OUT"/heads/medusa.* "$OUT"/heads/eagle.* /tmp/heads/ 2>/dev/null
  log done
  ;;
cost)
  # What one step costs per drafter shape (random weights: no model needed, so this can run while the
  # model is still on its way), then the fused Triton ops' tests on the GPU
  log step_cost
  timeout 240 python3 -m gorgon.bench.step_cost --profile --out "$OUT" \
    --methods "${METHODS:-plain,medusa,eagle,eagle:topk=10:total=30,eagle:depth=4:total=32}" 2>&1 | tail -12
  log triton tests
  timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_triton_ops.py tests/test_spec_kernels.py \
    tests/test_lookup.py -k "not default_model and not lossless" 2>&1 \
    | tail -8 | tee "$OUT/triton_tests.log"
  log done
  ;;
check)
  # The engine's GPU tests (graphs, every backend end to end, continuous batching, tree_debug): ~5 minutes
  log tests
  timeout 400 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -30 | tee "$OUT/gpu_tests.log"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_triton_ops.py 2>&1 | tail -10 \
    | tee -a "$OUT/gpu_tests.log"
  log done
  ;;
kernels)
  # The kernels on real shapes against float64, compute-sanitizer on both tensor-core CUDA kernels
  # (racecheck for the cp.async / barrier order), mma vs wmma accuracy and timing
  log kernel tests
  timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py 2>&1 | tail -15 \
    | tee "$OUT/kernel_tests.log"
  for kernel in mma wmma; do
    for tool in memcheck racecheck; do
      log $tool $kernel
      GORGON_CUDA_KERNEL=$kernel timeout 60 compute-sanitizer --tool $tool --print-limit 20 \
        python3 scripts/cuda_smoke.py 2>&1 | tail -6 | tee -a "$OUT/sanitizer.log"
    done
  done
  log cuda_compare
  timeout 120 python3 scripts/cuda_compare.py 2>&1 | tail -40 | tee "$OUT/cuda_compare.md"
  log done
  ;;
sweep)
  # the Triton tree-attention kernel's launch settings, timed per case against the memory floor
  log sweep
  timeout ${SWEEP_TIMEOUT:-420} python3 scripts/tree_attention_sweep.py --out "$OUT" ${SWEEP_ARGS:-} 2>&1 \
    | tee "$OUT/sweep.log" | grep -v "^{" | tail -20
  log done
  ;;
ab)
  # Kernel tests on real shapes, memcheck of the CUDA kernels' new merge, then same-run A/Bs: tree
  # attention (Triton settings, the Triton and CUDA kernels against earlier versions given as
  # TRITON_BEFORE=FILE / CUDA_BEFORE=DIR) and plain decode (tree kernel against the split kernel)
  # PARTS (default tests,decode,sweep) picks some of them, to fit a call's time limit
  parts=,${PARTS:-tests,decode,sweep},
  if [[ $parts == *,tests,* ]]; then
    log kernel tests
    timeout ${TESTS_TIMEOUT:-240} python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py 2>&1 | tail -15 \
      | tee "$OUT/kernel_tests.log"
    log memcheck
    GORGON_CUDA_KERNEL=mma timeout 60 compute-sanitizer --tool memcheck --print-limit 20 \
      python3 scripts/cuda_smoke.py 2>&1 | tail -4 | tee "$OUT/sanitizer.log"
  fi
  if [[ $parts == *,decode,* ]]; then
    log decode
    timeout 120 python3 scripts/decode_attention_ab.py --out "$OUT" 2>&1 | tail -16
  fi
  if [[ $parts == *,sweep,* ]]; then
    log sweep
    timeout ${SWEEP_TIMEOUT:-420} python3 scripts/tree_attention_sweep.py --out "$OUT" --repeats 3 --cuda \
      ${CUDA_BEFORE:+--cuda-baseline $CUDA_BEFORE} ${TRITON_BEFORE:+--baseline $TRITON_BEFORE} --name ab \
      ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/sweep.log" | grep -v "^{" | tail -20
  fi
  log done
  ;;
e2e_ab)
  # End-to-end A/B of the opt-in kernel paths (Triton backend, shipped heads): decode attention through
  # the split-K kernel or the tree kernel, merges with or without programmatic dependent launch; each
  # run warms up on every prompt first. Rows to $OUT/e2e_ab/<decode>_pdl<0|1>/.
  E=/tmp/heads/eagle; [ -f "$E.json" ] || E=; HEADS_E=${E:+:heads=$E}
  for dec in split tree; do
    for pdl in 0 1; do
      log e2e decode=$dec pdl=$pdl
      GORGON_DECODE_KERNEL=$dec GORGON_PDL=$pdl GORGON_ATTENTION=triton timeout 120 python3 -m gorgon bench \
        --device cuda --prompts summarization,code,qa --max-tokens 128 --repeats 3 --methods "plain,eagle$HEADS_E" \
        --out "$OUT/e2e_ab/${dec}_pdl$pdl" --no-progress 2>&1 | grep "^| all"
    done
  done
  log decode kernels
  timeout 120 python3 scripts/decode_attention_ab.py --out "$OUT" 2>&1 | tail -16
  log done
  ;;
flex)
  # The kernel table with FlexAttention timed in every case (one compile per shape): SHAPES=smollm2-135m,
  # then SHAPES=llama-3-8b in a second call, to fit the 10-minute limit
  log kernels with flex ${SHAPES:-}
  # the log keeps every row's JSON line, so that a call cut off by its time limit still has what ran
  timeout ${FLEX_TIMEOUT:-560} python3 -m gorgon.bench.kernels --flex all ${SHAPES:+--shapes $SHAPES} \
    --out "$OUT" 2>&1 | tee "$OUT/kernels_flex.log" | grep -v '^{' | tail -5
  log done
  ;;
ws)
  # The warp-specialized wgmma kernel: kernel tests (all but the CUDA grid), the verify step of the
  # Llama-3-8B shape at an 8192-token context with the automatic choice off then on, the full table
  log tests
  timeout ${TESTS_TIMEOUT:-300} python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py \
    -k "wgmma or graph or triton_tree or keep_path" 2>&1 | tail -8 | tee "$OUT/kernel_tests.log"
  for ws in 0 1; do
    log cost GORGON_WGMMA=$ws
    GORGON_WGMMA=$ws GORGON_ATTENTION=triton timeout 100 python3 -m gorgon bench cost --shape llama-3-8b \
      --context 8192 --out "$OUT/cost_wgmma$ws" 2>&1 | tail -7
  done
  log kernels
  timeout 200 python3 -m gorgon.bench.kernels --out "$OUT" 2>&1 | tee "$OUT/kernels.log" | grep -v '^{' | tail -3
  log done
  ;;
cuda8)
  log tests
  timeout ${TESTS_TIMEOUT:-240} python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py \
    -k "${TESTS_K:-cuda and (mma8 or wgmma or split_counts or exact)}" 2>&1 | tail -8 | tee "$OUT/kernel_tests.log"
  log accuracy
  timeout 150 python3 scripts/cuda_compare.py --no-timing 2>&1 | tail -24 | tee "$OUT/cuda_accuracy.md"
  log memcheck
  for kernel in mma4 mma8 wgmma4 wgmma8; do
    GORGON_CUDA_KERNEL=$kernel timeout 60 compute-sanitizer --tool memcheck --print-limit 20 \
      python3 scripts/cuda_smoke.py 2>&1 | tail -4 | tee -a "$OUT/sanitizer.log"
  done
  for l2 in warm cold; do
    log sweep $l2
    timeout ${SWEEP_TIMEOUT:-150} python3 scripts/tree_attention_sweep.py --out "$OUT" --repeats 3 --cuda \
      --launch '{}' --name "cuda8_$l2" $([ $l2 = cold ] && echo --cold) ${SWEEP_ARGS:-} 2>&1 \
      | tee "$OUT/sweep_$l2.log" | grep -v "^{" | tail -16
  done
  log done
  ;;
merge)
  log build  # outside the sanitizer: nvcc under it would eat the memcheck's time limit
  python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -2
  log memcheck
  for kernel in mma4 wgmma4; do
    GORGON_CUDA_KERNEL=$kernel timeout 60 compute-sanitizer --tool memcheck --print-limit 20 \
      python3 scripts/cuda_smoke.py 2>&1 | tail -4 | tee -a "$OUT/sanitizer.log"
  done
  log tests
  timeout ${TESTS_TIMEOUT:-330} python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py \
    -k "test_triton_tree_attention or test_wgmma" 2>&1 | tail -4 | tee "$OUT/kernel_tests.log"
  log half partials
  timeout ${SWEEP_TIMEOUT:-120} python3 scripts/tree_attention_sweep.py --out "$OUT" --repeats 5 --cold \
    --launch '{}' --launch '{"half_partials":true}' --launch '{"half_partials":false}' --name half_ab \
    --case llama-3-8b,1,64,8192 --case llama-3-8b,1,128,8192 --case llama-3-8b,1,64,2048 \
    --case llama-3-8b,1,16,8192 --case smollm2-135m,1,64,8192 2>&1 | grep -v "^{" | tail -8
  log done
  ;;
rounds)
  log tests
  timeout ${TESTS_TIMEOUT:-300} python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py \
    -k "resident or (test_triton_tree_attention and not launch and not 128) or launch_settings" 2>&1 | tail -4 \
    | tee "$OUT/kernel_tests.log"
  log waves
  timeout ${SWEEP_TIMEOUT:-200} python3 scripts/tree_attention_sweep.py --out "$OUT" --repeats 5 --cold \
    --launch '{}' --launch '{"waves":2}' --launch '{"occupancy":false}' --name waves_ab \
    --case smollm2-135m,8,128,8192 --case smollm2-135m,8,128,2048 --case smollm2-135m,8,128,512 \
    --case smollm2-135m,8,64,8192 --case llama-3-8b,8,1,8192 --case llama-3-8b,8,16,2048 \
    --case llama-3-8b,1,16,8192 2>&1 | grep -v "^{" | tail -10
  log done
  ;;
kbench)
  log kernels
  timeout 200 python3 -m gorgon.bench.kernels --out "$OUT" 2>&1 | grep -v '^{' | tee "$OUT/kernels.log" | tail -5
  for be in reference triton cuda; do
    log cost $be
    GORGON_ATTENTION=$be timeout 60 python3 -m gorgon bench cost --shape llama-3-8b --context ${CONTEXT:-8192} --out "$OUT" 2>&1 | tail -8
  done
  log done
  ;;
bench)
  M=/tmp/heads/medusa; E=/tmp/heads/eagle
  [ -f "$M.json" ] && [ -f "$E.json" ] || { M=; E=; }
  HEADS_M=${M:+:heads=$M}; HEADS_E=${E:+:heads=$E}
  log harness
  timeout 420 python3 -m gorgon bench --device cuda --prompts all --max-tokens 128 --repeats ${REPEATS:-2} \
    --methods "${METHODS:-plain,ngram:k=4,ngram:k=8,draft:layers=15:k=3,medusa$HEADS_M,eagle$HEADS_E,hf,hf-lookup}" \
    --out "$OUT" --no-progress 2>&1 | tail -70 | tee "$OUT/harness.log"
  for be in ${BACKENDS-reference triton cuda}; do
    log backend $be
    GORGON_ATTENTION=$be timeout 60 python3 -m gorgon bench --device cuda --prompts summarization,code \
      --max-tokens 128 --repeats 2 --methods "plain,ngram:k=8,eagle$HEADS_E" --out "$OUT/backends" --no-progress \
      2>&1 | tail -12
  done
  log done
  ;;
esac
