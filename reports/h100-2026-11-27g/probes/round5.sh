# Round 5 (2026-11-27g): Nsight Compute on one unsplit block a KV head, SmolLM2 heads, batch 1, N=16,
# P=256 and 1024: the CUDA wgmma4 kernel against the Triton kernel (splits=1). Where the CUDA kernel's
# extra fixed cost goes.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] ncu"
timeout 300 ncu --clock-control none --cache-control all -k 'regex:tree_attention' -o $OUT/small \
  --section SpeedOfLight --section LaunchStats --section WarpStateStats --section SchedulerStats \
  --section InstructionStats --section SourceCounters --section Occupancy --import-source yes \
  python3 scripts/profile_tree_attention.py --launch '{"splits": 1}' --cuda wgmma4 \
  --case smollm2-135m,1,16,256 --case smollm2-135m,1,16,1024 > $OUT/ncu_log.txt 2>&1
echo "ncu rc $?"
ncu -i $OUT/small.ncu-rep --print-details all > $OUT/details.txt 2>&1
grep -E "^  [a-z_]+.*\(|Duration|Elapsed Cycles|SM Active Cycles|Warp Cycles Per Issued|Issue Slots Busy|Executed Instructions  |Stall|No Eligible|Registers Per|Achieved Occ" $OUT/details.txt | head -120
ncu -i $OUT/small.ncu-rep --page source --print-source sass --csv -k regex:tree_attention_mma > $OUT/sass_cuda.csv 2>&1
ncu -i $OUT/small.ncu-rep --page source --print-source sass --csv -k regex:_tree_attention_kernel > $OUT/sass_triton.csv 2>&1
ls -la $OUT
echo "[$(date +%T)] done"
