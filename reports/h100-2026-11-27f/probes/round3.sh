# Round 3 (2026-11-27f): Nsight Compute on the CUDA ws kernel and the Triton (Gluon ws) kernel, batch 8
# and 1, N=64, P=8192, Llama-3-8B heads: where the ws kernels' time goes.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
python3 -c "from gorgon.kernels import cuda_ops; cuda_ops.extension()" 2>&1 | tail -3
echo "[$(date +%T)] ncu"
timeout 400 ncu --clock-control none --cache-control all -k 'regex:tree_attention' \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section Occupancy \
  --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
  --metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sector_hit_rate.pct,dram__bytes_read.sum,smsp__inst_executed.sum,lts__t_bytes.sum.per_second \
  python3 scripts/profile_tree_attention.py --launch '{}' --cuda ws \
  --case llama-3-8b,8,64,8192 --case llama-3-8b,1,64,8192 > $OUT/ncu_ws.txt 2>&1
echo "ncu rc $?"
grep -E "^==|Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|  [a-z_]+(kernel|_ws)|gmma|Issue Slots Busy|No Eligible|Stall|Warp Cycles Per Issued|hit_rate|dram__bytes|srcunit|inst_executed.sum|lts__t_bytes" $OUT/ncu_ws.txt | head -150
echo "[$(date +%T)] done"
