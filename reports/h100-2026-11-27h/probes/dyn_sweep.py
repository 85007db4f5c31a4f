"""Round 7: the dynamic-tile kernel (shipped, opt-in) against the default launch over batch, tree size,
context and head shape (DYNAMIC_MIN_SPAN lifted), cold L2, CUDA graphs, interleaved 3 times, to set where
Launch(dynamic=True) takes it. usage: dyn_sweep.py OUT"""
import json
import statistics
import sys
from pathlib import Path

import torch

import gorgon.kernels.tree_attention as ta
from gorgon.bench.kernels import HEADS, _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
ta.DYNAMIC_MIN_SPAN = 0
bw = copy_bandwidth("cuda")
sms = torch.cuda.get_device_properties(0).multi_processor_count
rows = []
for shape, (hq, hkv, d) in HEADS.items():
    for batch in (1, 2, 4):
        for n in (1, 16):
            for p in (512, 2048, 8192):
                q = torch.empty(batch, n, hq, d, device="cuda", dtype=torch.bfloat16)
                if not ta._dynamic_plan(q, ta.Launch(dynamic=True), n * hq // hkv, batch * hkv, p, sms):
                    continue
                sets = input_sets(batch, p + n, hkv, d, True)
                cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
                times = {"default": [], "dynamic": []}
                for _ in range(3):
                    for name, launch in (("default", ta.Launch()), ("dynamic", ta.Launch(dynamic=True))):
                        fns = [lambda q=q, k=k, v=v, t=t, l=launch: ta.tree_attention(q, k, v, t.committed, t.bits, p + n, d**-0.5, launch=l) for q, k, v, t in cases]  # noqa: E501
                        times[name].append(time_rotating(fns) * 1e3)
                floor = kv_bytes(batch, p + n, hkv, d) / bw * 1e6
                row = {"shape": shape, "batch": batch, "n": n, "p": p, "floor_us": floor,
                       **{f"{k}_us": statistics.median(v) for k, v in times.items()}}
                row["ratio"] = row["dynamic_us"] / row["default_us"]
                print(json.dumps(row), flush=True)
                rows.append(row)
(OUT / "dyn_sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
lines = ["| heads | batch | N | P | default us | dynamic us | dynamic / default | default x floor | dynamic x floor |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['shape']} | {r['batch']} | {r['n']} | {r['p']} | {r['default_us']:.2f} | {r['dynamic_us']:.2f} | "
                 f"{r['ratio']:.3f} | {r['default_us'] / r['floor_us']:.2f} | {r['dynamic_us'] / r['floor_us']:.2f} |")
(OUT / "dyn_sweep.md").write_text("\n".join(lines) + "\n")
