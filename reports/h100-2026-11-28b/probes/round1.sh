# Round 1 (2026-11-28b): the cluster form (wsc): build, its GPU tests, the A/B.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 GORGON_CACHE=$PWD/build/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/env.txt
echo "[$(date +%T)] build"
timeout 240 python3 scripts/.clab.py $OUT build 2>&1 | tail -5
echo "[$(date +%T)] tests"
timeout 150 python3 -m pytest -q -x tests/test_kernels_gpu.py -k "cluster or (cuda_tree_attention and wsc)" -p no:cacheprovider 2>&1 | tail -8 | tee $OUT/wsc_tests.log
echo "[$(date +%T)] ab"
export CASES='[["llama",1,1,8192,["triton","ws","ws8","wsc","wsc8","wsc16"]],
["llama",1,16,8192,["triton","ws","ws8","wsc","wsc8","wsc16"]],
["llama",1,64,8192,["triton","ws","wsc"]],
["llama",1,64,2048,["triton","ws","wsc"]],
["llama",2,16,8192,["triton","ws","wsc"]],
["llama",8,1,8192,["triton","ws","wsc"]],
["llama",8,64,8192,["triton","ws","wsc"]],
["smollm2",1,16,8192,["triton","ws","wsc"]],
["smollm2",8,16,8192,["triton","ws","wsc"]],
["llama",1,128,8192,["triton","ws","wsc"]]]'
timeout 240 python3 scripts/.clab.py $OUT 2>&1 | cut -c1-220 | tail -48
echo "[$(date +%T)] done"
