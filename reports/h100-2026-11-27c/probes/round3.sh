set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 - <<'PY' 2>&1 | tee $OUT/plans.txt
import torch
from gorgon.bench.kernels import HEADS, _case
from gorgon.kernels import tree_attention as ta
for shape, b, n, p in [("smollm2-135m",8,128,8192),("smollm2-135m",8,96,8192),("smollm2-135m",16,64,8192),("llama-3-8b",2,128,8192),("llama-3-8b",4,64,8192),("llama-3-8b",4,64,2048)]:
    hq, hkv, d = HEADS[shape]
    q, k, v, tree = _case(b, n, p, hq, hkv, d, torch.bfloat16)
    for w in (1, 2):
        ta._plans.clear()
        ta.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, launch=ta.Launch(waves=w))
        print(shape, b, n, p, "waves", w, "(programs, per_sm, split) plans:", ta._plans)
PY
echo "[$(date +%T)] split counts"
L=(--launch '{"waves":1}')
for k in 1 2 3 5 6 8 11; do L+=(--launch "{\"splits\":$k}"); done
timeout 300 python3 scripts/tree_attention_sweep.py --out $OUT --repeats 3 --cold "${L[@]}" --name splits_study \
  --case smollm2-135m,8,128,8192 --case smollm2-135m,8,96,8192 --case smollm2-135m,16,64,8192 \
  --case llama-3-8b,2,128,8192 --case llama-3-8b,4,64,8192 --case smollm2-135m,8,128,2048 2>&1 | grep -v '^{' | tail -10
echo "[$(date +%T)] done"
