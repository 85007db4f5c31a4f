set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] ncu batch 1"
timeout 200 ncu --clock-control none --cache-control all -k 'regex:tree_attention|merge|reduce' \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
  --section WarpStateStats --section SchedulerStats \
  python3 scripts/profile_tree_attention.py --read --launch '{}' \
  --case llama-3-8b,1,1,8192 --case llama-3-8b,1,16,8192 --case llama-3-8b,1,64,8192 > $OUT/ncu_b1.txt 2>&1
echo "ncu rc $?"; grep -E "^==|Duration|DRAM Throughput|  [a-z_]+kernel|Registers Per|Achieved Occupancy|Grid Size|Block Limit Shared" $OUT/ncu_b1.txt | head -150
echo "[$(date +%T)] wgmma tests from 78"
python3 -m pytest --collect-only -q -p no:cacheprovider tests/test_kernels_gpu.py -k test_wgmma 2>/dev/null \
  | grep '::' | tail -n +78 > /tmp/rest.txt
wc -l < /tmp/rest.txt
timeout ${WG:-300} python3 -m pytest -v -p no:cacheprovider $(cat /tmp/rest.txt) 2>&1 | grep -E "PASS|FAIL|ERROR|passed|failed" \
  > $OUT/wgmma_tests.log
grep -c PASSED $OUT/wgmma_tests.log; grep -E "FAIL|ERROR" $OUT/wgmma_tests.log | head; tail -2 $OUT/wgmma_tests.log
echo "[$(date +%T)] done"
