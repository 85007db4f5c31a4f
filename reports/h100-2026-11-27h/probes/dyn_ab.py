"""Study: the dynamic-tile Gluon kernel (.dyn_kernel.py) against the shipped Triton launch. Correctness first
(against the float64 reference, repeated calls so the counter must reset), then cold-L2 CUDA-graph timings
interleaved 3 times. usage: dyn_ab.py OUT"""
import importlib.util
import json
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, time_rotating
from gorgon.kernels.tree_attention import Launch, tree_attention

spec = importlib.util.spec_from_file_location("dyn_kernel", Path(__file__).parent / ".dyn_kernel.py")
dk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dk)
OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)


def check(n, p, hq, hkv, d, batch=1, **kw):
    q, k, v, tree = _case(batch, n, p, hq, hkv, d, torch.bfloat16)
    ref = tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, launch=Launch(wgmma=False))
    errs = []
    for _ in range(3):
        out = dk.dyn_tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, **kw)
        errs.append((out.float() - ref.float()).abs().max().item())
    ctr = int(dk.counters(q.device)[:64].abs().sum().item())
    return {"n": n, "p": p, "hq": hq, "hkv": hkv, "d": d, "batch": batch, **kw, "maxerr": max(errs), "ctr_after": ctr}


ok = True
for case in [(1, 8192, 32, 8, 128), (16, 8192, 32, 8, 128), (16, 1000, 32, 8, 128), (7, 300, 32, 8, 128),
             (16, 64, 32, 8, 128), (1, 5, 32, 8, 128), (16, 8192, 9, 3, 64), (64, 2048, 32, 8, 128),
             (3, 777, 9, 3, 64)]:
    for kw in ({}, {"block_n": 64, "stages": 4}):
        r = check(*case, **kw)
        good = r["maxerr"] < 2e-2 and r["ctr_after"] == 0
        ok &= good
        print(("ok  " if good else "BAD ") + json.dumps(r))
r = check(16, 4000, 32, 8, 128, batch=2)
print(json.dumps(r))
if not ok:
    sys.exit(1)

variants = {
    "auto": None,
    "dyn128_s3": {"block_n": 128, "stages": 3},
    "dyn128_s2": {"block_n": 128, "stages": 2},
    "dyn64_s4": {"block_n": 64, "stages": 4},
    "dyn64_s6": {"block_n": 64, "stages": 6},
}
res = []
for n in (1, 16, 64):
    p = 8192
    sets = input_sets(1, p + n, 8, 128, True)
    cases = [_case(1, n, p, 32, 8, 128, torch.bfloat16) for _ in range(sets)]
    for rep in range(3):
        for name, kw in variants.items():
            if kw is None:
                fns = [lambda q=q, k=k, v=v, t=t: tree_attention(q, k, v, t.committed, t.bits, p + n, 128**-0.5) for q, k, v, t in cases]  # noqa: E501
            else:
                fns = [lambda q=q, k=k, v=v, t=t, kw=kw: dk.dyn_tree_attention(q, k, v, t.committed, t.bits, p + n, 128**-0.5, **kw) for q, k, v, t in cases]  # noqa: E501
            res.append({"n": n, "p": p, "variant": name, "rep": rep, "us": time_rotating(fns) * 1e3})
        print(n, rep, " ".join(f"{r['variant']}={r['us']:.2f}" for r in res if r["n"] == n and r["rep"] == rep))
(OUT / "dyn_ab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in res))
