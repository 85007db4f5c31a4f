"""Study, round 6: the dynamic-tile kernel's timeline (stamps a program: start, loop end, end, tiles taken)
and two programs an SM (64-slot tiles, 2 stages, 200 registers), batch 1, Llama-3-8B heads, P=8192.
usage: dyn_ab2.py OUT"""
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, time_rotating
from gorgon.kernels.tree_attention import Launch, tree_attention

spec = importlib.util.spec_from_file_location("dyn_kernel", Path(__file__).parent / ".dyn_kernel.py")
dk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dk)
spec = importlib.util.spec_from_file_location("tl_probe", Path(__file__).parent / ".timeline.py")
OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
sms = torch.cuda.get_device_properties(0).multi_processor_count

# correctness of the two-an-SM form
for n, p in ((1, 8192), (16, 8192), (16, 1000)):
    q, k, v, tree = _case(1, n, p, 32, 8, 128, torch.bfloat16)
    ref = tree_attention(q, k, v, tree.committed, tree.bits, p + n, 128**-0.5, launch=Launch(wgmma=False))
    for _ in range(2):
        out = dk.dyn_tree_attention(q, k, v, tree.committed, tree.bits, p + n, 128**-0.5, block_n=64, stages=2,
                                    maxnreg=200, nprog=2 * sms // 8 - 1)
        print("check", n, p, (out.float() - ref.float()).abs().max().item(), int(dk.counters(q.device)[:64].sum()))

variants = {
    "auto": None,
    "dyn128_s2": {"block_n": 128, "stages": 2},
    "dyn64_s4": {"block_n": 64, "stages": 4},
    "dyn64_s2_x2": {"block_n": 64, "stages": 2, "maxnreg": 200, "nprog": 2 * sms // 8 - 1},
    "dyn128_s1_x2": {"block_n": 128, "stages": 1, "maxnreg": 200, "nprog": 2 * sms // 8 - 1},
}
res = []
for n in (1, 16):
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
(OUT / "dyn_ab2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in res))

# timelines: the dynamic kernel stamped, in a graph with stamp kernels before and after (as timeline.py)
import triton
import triton.language as tl


@triton.jit
def stamp_kernel(T):
    tl.store(T, tl.extra.cuda.globaltimer())


tl_res = {}
for n, name in ((1, "dyn64_s4"), (16, "dyn128_s2"), (1, "dyn64_s2_x2"), (16, "dyn64_s2_x2")):
    kw = variants[name]
    p = 8192
    sets = input_sets(1, p + n, 8, 128, True)
    cases = [_case(1, n, p, 32, 8, 128, torch.bfloat16) for _ in range(sets)]
    nprog = kw.get("nprog", sms // 8 - 1)
    bufs = [torch.zeros(8 * (nprog + 1), 5, dtype=torch.int64, device="cuda") for _ in cases]
    stamps = [torch.zeros(2, dtype=torch.int64, device="cuda") for _ in cases]
    outs = [torch.empty_like(c[0]) for c in cases]

    def run_all():
        for (q, k, v, t), buf, st, o in zip(cases, bufs, stamps, outs):
            stamp_kernel[(1,)](st)
            dk.dyn_tree_attention(q, k, v, t.committed, t.bits, p + n, 128**-0.5, times=buf, out=o, **kw)
            stamp_kernel[(1,)](st[1:])

    run_all()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        run_all()
    rows = []
    for rep in range(5):
        g.replay()
        torch.cuda.synchronize()
        for buf, st in zip(bufs, stamps):
            s0, s1 = st.tolist()
            a = buf.tolist()
            ctx = [x for j, x in enumerate(a) if j // 8 != nprog]
            rows.append({
                "total_us": (s1 - s0) / 1e3,
                "first_start": (min(x[1] for x in a) - s0) / 1e3,
                "ctx_mean_end": statistics.mean((x[3] - s0) / 1e3 for x in ctx),
                "ctx_max_end": max((x[3] - s0) / 1e3 for x in ctx),
                "ctx_min_end": min((x[3] - s0) / 1e3 for x in ctx),
                "tiles_min": min(x[4] for x in ctx), "tiles_max": max(x[4] for x in ctx),
                "epilogue_med": statistics.median((x[3] - x[2]) / 1e3 for x in ctx),
            })
    summ = {k: statistics.median(r[k] for r in rows[len(cases):]) for k in rows[0]}
    print("timeline", n, name, json.dumps(summ))
    tl_res[f"{n}_{name}"] = {"summary": summ, "last": bufs[-1].tolist(), "stamps": stamps[-1].tolist()}
(OUT / "dyn_timeline.json").write_text(json.dumps(tl_res))
