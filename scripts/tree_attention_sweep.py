"""Sweep the tree-attention kernels' launch settings on a GPU (bf16, full top-4 trees).

    python scripts/tree_attention_sweep.py [--out DIR] [--quick] [--baseline FILE]
        [--case SHAPE,B,N,P ...] [--launch JSON ...] [--repeats R] [--cuda [--cuda-baseline DIR]] [--cold]

For each case: the default Launch's time, the best setting found, and both against the memory floor
(K/V bytes over the measured copy bandwidth), so that the defaults can be chosen from measurements.
Every setting's output is checked against the default's before it is timed. --launch replaces the grid
with the settings given (keyword arguments of Launch, as JSON); --repeats times every setting R times,
interleaved (setting after setting, then again), and keeps the median, so that drift over a case does
not favour one setting. --baseline times another version of gorgon/kernels/tree_attention.py (its
defaults) in the same run, as "before". --cuda adds the CUDA kernel (its automatic choice, without PDL,
and each of its tensor-core kernels); --cuda-baseline DIR also an earlier version of it, built from the
sources in DIR. --cold gives every call its own inputs, rotating over as many sets as make 160 MB of K/V
(three times the H100's L2), so that each call reads K/V that the previous ones evicted, as a model step
reads a layer's K/V; without it, batch-1 K/V (34 MB at Llama-3-8B heads and P=8192) stays in L2 between
back-to-back replays.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import statistics
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import HEADS, _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth, machine
from gorgon.kernels.tree_attention import DEFAULT_LAUNCH, Launch, tree_attention

CASES = [  # (shape, batch, N, P)
    ("llama-3-8b", 1, 1, 8192), ("llama-3-8b", 1, 16, 8192), ("llama-3-8b", 1, 64, 8192),
    ("llama-3-8b", 1, 128, 8192), ("llama-3-8b", 1, 64, 2048), ("llama-3-8b", 8, 1, 8192),
    ("llama-3-8b", 8, 16, 8192), ("llama-3-8b", 8, 64, 8192), ("llama-3-8b", 8, 128, 8192),
    ("smollm2-135m", 1, 16, 8192), ("smollm2-135m", 1, 64, 8192), ("smollm2-135m", 8, 64, 8192),
]  # fmt: skip


def settings(quick: bool) -> list[Launch]:
    """The grid: row and slot tiles, warps, stages and split rounds (half-precision partials), plus the
    default with float32 partials, to show what the partials' precision is worth."""
    if quick:
        grid = itertools.product((None, 128), (None, 64, 128), (4, 8), (None, 3), (1, 2))
    else:
        grid = itertools.product((None, 128), (None, 64, 128), (4, 8), (None, 3, 4), (1, 2, 3))
    grid = [dict(block_m=m, block_n=n, num_warps=w, num_stages=st, waves=wv) for m, n, w, st, wv in grid]
    found = [Launch(**setting, wgmma=False) for setting in grid]  # the Triton kernel's own settings
    return [*found, Launch(half_partials=False)]


def load_baseline(path: str):
    """tree_attention from another version of the module (a file), to time as "before"."""
    spec = importlib.util.spec_from_file_location("tree_attention_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module.tree_attention


def cuda_runners(kv_len: int, scale: float, baseline: str | None) -> dict:
    """Functions of one input set (q, k, v, tree): the CUDA kernel as shipped (its automatic choice),
    without programmatic dependent launch of its merge, each mma kernel (4 and 8 warps a block), and,
    with --cuda-baseline DIR, as built from an earlier version's sources in DIR (tree_attention.cu and
    binding.cpp: commit 8122c96, float32 m/l/acc partials and a split-by-split merge; or commit 6011496,
    half-precision partials, two K/V stages, no PDL), called with that version's scratch tensors and
    4-warp split plan."""
    from gorgon.kernels import cuda_ops

    if not cuda_ops.buildable():
        return {}

    def shipped(case, pdl: str, kernel: str | None = None):
        q, k, v, tree = case
        os.environ["GORGON_PDL"] = pdl
        try:
            return cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale, kernel=kernel)
        finally:
            os.environ.pop("GORGON_PDL")

    runners = {"cuda": lambda c: shipped(c, "1"), "cuda, no PDL": lambda c: shipped(c, "0")}
    names = ("mma4", "mma8") + (("wgmma4", "wgmma8", "ws") if cuda_ops.has_wgmma() else ())
    runners.update({f"cuda {name}": lambda c, name=name: shipped(c, "1", name) for name in names})
    if baseline:
        old = _old_cuda(baseline)
        binding = (Path(baseline) / "binding.cpp").read_text()
        half = "torch::Tensor lse" in binding
        has_pdl = "bool pdl" in binding  # the merge's PDL flag (passed off)

        def before(case, code: int = 1):
            q, k, v, tree = case
            b, n, hq, d = q.shape
            nsplit, split = cuda_ops.split_plan(q, k, kv_len, code)
            parts = b * n * hq * nsplit if nsplit > 1 else 1
            out = torch.empty_like(q)
            m = torch.empty(parts, device=q.device, dtype=torch.float32)
            head = (q, k, v, tree.committed, tree.bits, out, m)
            tail = (scale, nsplit, split, code, False) if has_pdl else (scale, nsplit, split, code)
            if half:  # lse [parts], partials [parts, d] in q's dtype
                part = torch.empty(parts, d if nsplit > 1 else 1, device=q.device, dtype=q.dtype)
                old.tree_attention(*head, part, *tail)
                return out
            acc = torch.empty(parts, d if nsplit > 1 else 1, device=q.device, dtype=torch.float32)
            old.tree_attention(*head, torch.empty_like(m), acc, *tail)
            return out

        if "kernel <= 3" in binding or "kernel <= 5" in binding:  # it has the 8-warp kernel too
            runners["cuda before mma8"] = lambda c: before(c, cuda_ops.KERNELS["mma8"])
        if "kernel <= 5" in binding and cuda_ops.has_wgmma():  # and the wgmma forms
            for name in ("wgmma4", "wgmma8"):
                runners[f"cuda before {name}"] = lambda c, code=cuda_ops.KERNELS[name]: before(c, code)
        runners["cuda before"] = before
    return runners


def cuda_split_runners(kv_len: int, scale: float, counts: str) -> dict:
    """--cuda-splits 1,2,3: the CUDA backend's automatic kernel with each count of context splits forced
    (split_plan's study knob), to compare with its own split plan ("cuda")."""
    from gorgon.kernels import cuda_ops

    def forced(case, splits: int):
        q, k, v, tree = case
        return cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale, splits=splits)

    def rounds(case):  # the plan before balanced splits: the kernel and split count it chose
        q, k, v, tree = case
        name, count = rounds_plan(q, k, kv_len)
        return cuda_ops.tree_attention(
            q, k, v, tree.committed, tree.bits, kv_len, scale, kernel=name, splits=count
        )

    ks = [int(x) for x in counts.split(",") if x]
    runners = {f"cuda k={k}": lambda c, k=k: forced(c, k) for k in ks} | {"cuda rounds": rounds}
    return runners if cuda_ops.buildable() and ks else {}


def rounds_plan(q: torch.Tensor, k: torch.Tensor, kv_len: int) -> tuple[str, int]:
    """The CUDA backend's kernel and context split count before balanced splits (77a335c's cuda_ops):
    8-warp blocks on Hopper wherever the 4-warp ones fill half the resident places, splits in one round
    of them (split_in_rounds)."""
    from gorgon.kernels import cuda_ops
    from gorgon.kernels.attention import split_in_rounds

    b, n, hq, d = q.shape
    hkv = k.shape[2]
    rows = n * (hq // hkv)
    target = cuda_ops._target_blocks(q.get_device())
    wide = d == 128 and rows > 64 and b * hkv * -(-rows // 64) >= target // 2
    few = d == 128 and 16 < rows <= 64 and b * hkv * -(-rows // 64) * 16 <= target
    name = ("wgmma8" if wide or few else "wgmma4") if cuda_ops.has_wgmma() else ("mma8" if wide else "mma4")
    block = 128 if name.endswith("8") else 64
    blocks = b * hkv * -(-rows // block)
    span = max(kv_len - n, 1)
    split = split_in_rounds(span, blocks, target * max(128 // d, 1) * 64 // block, cuda_ops.MIN_SPLIT, 64)
    return name, -(-span // split)


def cuda_plan(case, kv_len: int) -> str:
    """The CUDA backend's automatic kernel for this case and its (programs a row block, split) plan."""
    from gorgon.kernels import cuda_ops

    q, k = case[0], case[1]
    if not cuda_ops.buildable():
        return ""
    name = cuda_ops._auto_kernel(q, k.shape[2], max(kv_len - q.shape[1], 1))
    nsplit, split = cuda_ops.split_plan(q, k, kv_len, cuda_ops.KERNELS[name])
    old, count = rounds_plan(q, k, kv_len)
    return f"{name} nsplit {nsplit} split {split} (rounds plan: {old}, {count} context splits)"


def _head_major(t: torch.Tensor) -> torch.Tensor:
    """The same [B, S, Hkv, D] values stored head-major ([B, Hkv, S, D] underneath): a KV head's slots
    contiguous, so that a split reads one run of memory instead of 256-byte rows 2 KB apart."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def head_major_fns(call, cuda: bool, kv_len: int, scale: float) -> dict:
    """--head-major: the default launch, PDL, and (with --cuda) the CUDA kernel as shipped, to run on
    head-major copies of the input sets in the same interleaved rounds as the token-major ones."""
    fns = {
        "head-major": lambda c: call(DEFAULT_LAUNCH, c),
        "head-major pdl": lambda c: call(Launch(pdl=True), c),
    }
    shipped = cuda_runners(kv_len, scale, None).get("cuda") if cuda else None
    return fns | ({"cuda head-major": shipped} if shipped else {})


def checked(fns: dict, sets: list, want: torch.Tensor, where: str) -> dict:
    """Each function's calls over the input sets (one a set), once its output on the first set agrees
    with the default launch's."""
    runners = {}
    for name, fn in fns.items():
        if not torch.allclose(fn(sets[0]).float(), want, atol=2e-2, rtol=2e-2):
            raise AssertionError(f"{name} disagrees with the default on {where}")
        runners[name] = [lambda case=case, fn=fn: fn(case) for case in sets]
    return runners


def _old_cuda(folder: str):
    from gorgon.kernels import cuda_ops

    cuda_ops.extension()  # built first: it sets the architecture list (sm_90a on Hopper) for both builds
    sources = [Path(folder) / name for name in ("tree_attention.cu", "binding.cpp")]
    return cuda_ops.build("gorgon_cuda_before", sources, "before")


def sweep(shape: str, batch: int, n: int, p: int, candidates: list[Launch], args, bandwidth: float) -> dict:
    hq, hkv, d = HEADS[shape]
    sets = input_sets(batch, p + n, hkv, d, args.cold)
    cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    scale, kv_len = d**-0.5, p + n

    def call(launch: Launch, case):
        q, k, v, tree = case
        return tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale, launch=launch)

    run = lambda launch: call(launch, cases[0])
    rotate = lambda fn: [lambda case=case: fn(case) for case in cases]  # one call per input set
    want = run(DEFAULT_LAUNCH).float()
    runners = {}
    for launch in candidates:
        try:
            got = run(launch).float()
        except Exception as err:  # e.g. out of shared memory for this tile and stage count
            print(f"  skip {launch}: {str(err)[:80]}")
            continue
        if not torch.allclose(got, want, atol=2e-2, rtol=2e-2):  # reported, not timed; the others go on
            err = (got - want).abs().max().item()
            print(f"  WRONG {launch}: not the default's output on {shape} b{batch} N{n} P{p} (max {err:.3g})")
            continue
        runners[launch] = rotate(lambda case, launch=launch: call(launch, case))
    others = {}
    if args.baseline:
        old = load_baseline(args.baseline)
        others["before"] = lambda c: old(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale)
    if args.cuda:
        others.update(cuda_runners(kv_len, scale, args.cuda_baseline))
        others.update(cuda_split_runners(kv_len, scale, args.cuda_splits))
    where = f"{shape} b{batch} N{n} P{p}"
    runners.update(checked(others, cases, want, where))
    if args.head_major:
        head_major = [(q, _head_major(k), _head_major(v), tree) for q, k, v, tree in cases]
        runners.update(checked(head_major_fns(call, args.cuda, kv_len, scale), head_major, want, where))
    times = {key: [] for key in runners}
    for _ in range(args.repeats):  # interleaved: each round times every setting once
        for key, fn in runners.items():
            times[key].append(time_rotating(fn) * 1e3)
    us = {key: statistics.median(t) for key, t in times.items()}
    timed = {key: t for key, t in us.items() if isinstance(key, Launch)}
    best = min(timed, key=timed.get)
    top = sorted(timed.items(), key=lambda kv: kv[1])[:5]
    return {
        "shape": shape, "batch": batch, "n": n, "p": p, "repeats": args.repeats, "input_sets": sets,
        "floor_us": kv_bytes(batch, p + n, hkv, d) / bandwidth * 1e6,
        "before_us": us.get("before"), "default_us": us.get(DEFAULT_LAUNCH), "best_us": timed[best],
        "best": best.__dict__, "top5": [(launch.__dict__, t) for launch, t in top],
        "float32_partials_us": us.get(Launch(half_partials=False)),
        "cuda_us": us.get("cuda"), "cuda_before_us": us.get("cuda before"),
        "cuda_no_pdl_us": us.get("cuda, no PDL"), "cuda_mma4_us": us.get("cuda mma4"),
        "cuda_mma8_us": us.get("cuda mma8"), "cuda_wgmma4_us": us.get("cuda wgmma4"),
        "cuda_wgmma8_us": us.get("cuda wgmma8"), "cuda_ws_us": us.get("cuda ws"),
        "pdl_us": us.get(Launch(pdl=True)),
        "head_major_us": us.get("head-major"), "head_major_pdl_us": us.get("head-major pdl"),
        "cuda_head_major_us": us.get("cuda head-major"),
        "cuda_plan": cuda_plan(cases[0], kv_len) if args.cuda else None,
        "cuda_splits_us": {key[7:]: t for key, t in us.items() if str(key).startswith("cuda k=")},
        "cuda_rounds_us": us.get("cuda rounds"),
        "all": [(key.__dict__ if isinstance(key, Launch) else key, t) for key, t in us.items()],
    }  # fmt: skip


def _cell(us: float | None, floor: float | None = None) -> str:
    if us is None:
        return ""
    return f"{us:.1f}" if floor is None else f"{us / floor:.2f}"


def table(rows: list[dict], title: str) -> list[str]:
    head = "shape | B | N | P | floor us | before us | default us | x floor | fp32 partials us | best us"
    head += " | x floor | best setting | CUDA us | CUDA x floor | CUDA no PDL us | CUDA before us"
    head += " | CUDA mma4 us | CUDA mma8 us | CUDA wgmma4 us | CUDA wgmma8 us | CUDA ws us | CUDA ws x floor"
    head += " | PDL us | head-major us | head-major x floor | head-major PDL us | CUDA head-major us"
    head += " | CUDA plan | CUDA rounds plan us | CUDA forced splits us"
    lines = [title, "", f"| {head} |"]
    lines += ["|---" * 30 + "|"]
    for r in rows:
        fields = Launch.__dataclass_fields__
        setting = ", ".join(f"{k} {v}" for k, v in r["best"].items() if v != fields[k].default)
        floor, best = r["floor_us"], r["best_us"]
        cells = [r["shape"], r["batch"], r["n"], r["p"], _cell(floor), _cell(r["before_us"])]
        cells += [_cell(r["default_us"]), _cell(r["default_us"], floor), _cell(r["float32_partials_us"])]
        cells += [_cell(best), _cell(best, floor), setting or "the default"]
        cells += [_cell(r["cuda_us"]), _cell(r["cuda_us"], floor), _cell(r["cuda_no_pdl_us"])]
        cells += [_cell(r["cuda_before_us"]), _cell(r.get("cuda_mma4_us")), _cell(r.get("cuda_mma8_us"))]
        cells += [_cell(r.get("cuda_wgmma4_us")), _cell(r.get("cuda_wgmma8_us"))]
        cells += [_cell(r.get("cuda_ws_us")), _cell(r.get("cuda_ws_us"), floor), _cell(r.get("pdl_us"))]
        hm = r.get("head_major_us")
        cells += [
            _cell(hm),
            _cell(hm, floor),
            _cell(r.get("head_major_pdl_us")),
            _cell(r.get("cuda_head_major_us")),
            r.get("cuda_plan") or "",
            _cell(r.get("cuda_rounds_us")),
            " / ".join(f"k={k} {t:.1f}" for k, t in (r.get("cuda_splits_us") or {}).items()),
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baseline", help="another tree_attention.py to time in the same run")
    ap.add_argument("--case", action="append", help="SHAPE,B,N,P (repeatable; default: the built-in cases)")
    ap.add_argument("--launch", action="append", help="Launch keywords as JSON (repeatable; default: grid)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--cuda-baseline", help="a folder with an earlier tree_attention.cu and binding.cpp")
    ap.add_argument("--name", default="tree_attention_sweep")
    ap.add_argument("--cold", action="store_true", help="rotate over input sets larger than the L2")
    ap.add_argument("--head-major", action="store_true", help="also time K/V stored head-major")
    ap.add_argument(
        "--cuda-splits",
        default="",
        help="with --cuda: its automatic kernel at these context split counts, e.g. 1,2,3",
    )
    args = ap.parse_args()
    cases = [(c.split(",")[0], *map(int, c.split(",")[1:])) for c in args.case] if args.case else CASES
    candidates = [Launch(**json.loads(s)) for s in args.launch] if args.launch else settings(args.quick)
    for launch in (DEFAULT_LAUNCH, Launch(half_partials=False)):
        if launch not in candidates:
            candidates.insert(0, launch)
    bandwidth = copy_bandwidth("cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out / f"{args.name}.jsonl", "w") as f:  # row by row: a time limit keeps what ran
        for case in cases:
            rows.append(sweep(*case, candidates, args, bandwidth))
            f.write(json.dumps(rows[-1]) + "\n")
            f.flush()
            print(json.dumps(rows[-1]), flush=True)
    gpu = machine().get("gpu")
    title = f"Tree attention launch sweep, {gpu}, bf16, {len(candidates)} settings per case, "
    title += f"median of {args.repeats} interleaved" + (", cold L2" if args.cold else "")
    lines = table(rows, title)
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
