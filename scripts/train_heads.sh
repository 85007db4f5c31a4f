#!/usr/bin/env bash
# Self-distil the default model, train its Medusa heads and EAGLE layer, and measure them against plain
# decoding on the built-in held-out prompts. Everything lands in $OUT (default: heads-run/).
# The shipped heads (src/gorgon/heads/weights/) came from: DEVICE=cuda bash scripts/train_heads.sh
set -euo pipefail
OUT=${OUT:-heads-run}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# PARTS: which of distill, medusa, eagle to run (default all; a later part reuses $OUT/distill.safetensors)
PARTS=${PARTS:-distill,medusa,eagle}
has() { [[ ",$PARTS," == *",$1,"* ]]; }
# TASKS: task prompts (summarise, translate, answer from a passage) made from the answers, answered too
# TEMP: the answers' temperature (0: greedy answers, the distribution greedy decoding verifies against)
# SEED: the Magpie questions' seed (another seed: other questions, for training on from earlier heads)
has distill && python3 -m gorgon distill --device "$DEVICE" --out "$OUT/distill.safetensors" \
  --num-samples "${SAMPLES:-6000}" --batch-size "${BATCH:-128}" --max-tokens "${MAX_TOKENS:-256}" \
  --temperature "${TEMP:-0.7}" --seed "${SEED:-0}" --tasks "${TASKS:-0}"
has medusa && python3 -m gorgon train medusa ${MEDUSA_INIT:+--init $MEDUSA_INIT --shuffle-seed ${SHUFFLE:-1}} --device "$DEVICE" --data "$OUT/distill.safetensors" --out "$OUT/medusa" \
  --epochs "${EPOCHS_MEDUSA:-2}" --tokens-per-batch "${TPB:-8192}" --tree-size "${TREE:-48}" --eval-every "${EVAL:-200}" \
  ${MEDUSA_SECONDS:+--max-seconds $MEDUSA_SECONDS}
# EAGLE_INIT / MEDUSA_INIT: continue from earlier heads (path prefix), batches in order SHUFFLE
has eagle && python3 -m gorgon train eagle ${EAGLE_INIT:+--init $EAGLE_INIT --shuffle-seed ${SHUFFLE:-1}} --device "$DEVICE" --data "$OUT/distill.safetensors" --out "$OUT/eagle" \
  --epochs "${EPOCHS_EAGLE:-3}" --tokens-per-batch "${TPB:-8192}" --top-k "${TOPK:-10}" --depth "${DEPTH:-3}" \
  --total-tokens "${TOTAL:-30}" --eval-every "${EVAL:-200}" ${EAGLE_SECONDS:+--max-seconds $EAGLE_SECONDS} \
  ${UNROLL:+--unroll $UNROLL}
[ -n "${NO_BENCH:-}" ] && exit 0
python3 -m gorgon.bench.spec --device "$DEVICE" --category all --repeats "${REPEATS:-3}" \
  --max-tokens "${BENCH_TOKENS:-128}" --out "$OUT" \
  --methods "plain,ngram:k=4,medusa:heads=$OUT/medusa,eagle:heads=$OUT/eagle"
