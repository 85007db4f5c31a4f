set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> $OUT/env.txt
echo "[$(date +%T)] layout/pdl sweep"
timeout 330 python3 scripts/tree_attention_sweep.py --out $OUT/layout --repeats 5 --cold --head-major \
  --launch '{}' --launch '{"pdl":true}' --name layout_ab \
  --case llama-3-8b,1,1,8192 --case llama-3-8b,1,16,8192 --case llama-3-8b,1,64,8192 \
  --case llama-3-8b,1,64,2048 --case llama-3-8b,8,16,8192 --case smollm2-135m,1,16,8192 \
  --case llama-3-8b,1,128,8192 2>&1 | grep -v '^{' | tail -14
for pdl in 0 1 0 1; do
  echo "[$(date +%T)] cost pdl=$pdl"
  GORGON_PDL=$pdl GORGON_ATTENTION=triton timeout 70 python3 -m gorgon bench cost --shape llama-3-8b \
    --context 8192 --out $OUT/cost_pdl$pdl 2>&1 | grep -E 'verify ms|x plain|Plain'
done
echo "[$(date +%T)] done"
