# Round 5 (2026-11-28d): the kernel table at HEAD (PDL merges by default for the ws kernel), and the
# Llama-3-8B verify step at 8192 tokens with the cuda backend, GORGON_PDL=0 against the default.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 150 python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension(); print('built')" 2>&1 | tail -1
echo "[$(date +%T)] table"
timeout 300 python3 -m gorgon.bench.kernels --out "$OUT/kbench" 2>&1 | grep -v '^{' | grep -v "flex_attention does not run" | tail -3
for pdl in 0 default; do
  echo "[$(date +%T)] cost pdl=$pdl"
  if [ $pdl = default ]; then unset GORGON_PDL; else export GORGON_PDL=$pdl; fi
  GORGON_ATTENTION=cuda timeout 50 python3 -m gorgon bench cost --shape llama-3-8b \
    --context 8192 --out $OUT/cost_pdl$pdl 2>&1 | grep -E 'verify ms|x plain|Plain' | head -8
done
echo "[$(date +%T)] done"
