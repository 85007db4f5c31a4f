"""Sweep the Triton tree-attention kernel's launch settings on a GPU (bf16, full top-4 trees).

    python scripts/tree_attention_sweep.py [--out DIR] [--quick] [--baseline FILE]

For each case: the default Launch's time, the best setting found, and both against the memory floor
(K/V bytes over the measured copy bandwidth), so that the defaults can be chosen from measurements.
Every setting's output is checked against the default's before it is timed. --baseline times another
version of gorgon/kernels/tree_attention.py (its defaults) in the same run, as "before".
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import HEADS, _case, _time
from gorgon.bench.timing import copy_bandwidth, machine
from gorgon.kernels.tree_attention import DEFAULT_LAUNCH, Launch, tree_attention

CASES = [  # (shape, batch, N, P)
    ("llama-3-8b", 1, 1, 8192), ("llama-3-8b", 1, 16, 8192), ("llama-3-8b", 1, 64, 8192),
    ("llama-3-8b", 1, 128, 8192), ("llama-3-8b", 1, 64, 2048), ("llama-3-8b", 8, 1, 8192),
    ("llama-3-8b", 8, 16, 8192), ("llama-3-8b", 8, 64, 8192), ("llama-3-8b", 8, 128, 8192),
    ("smollm2-135m", 1, 16, 8192), ("smollm2-135m", 1, 64, 8192), ("smollm2-135m", 8, 64, 8192),
]  # fmt: skip


def settings(quick: bool) -> list[Launch]:
    """The grid: row and slot tiles, warps, stages and split waves (half-precision partials), plus the
    default with float32 partials, to show what the partials' precision is worth."""
    if quick:
        grid = itertools.product((None, 128), (64, 128), (4, 8), (None, 3), (1, 2))
    else:
        grid = itertools.product((None, 128), (64, 128), (4, 8), (None, 3, 4), (1, 2, 4))
    found = [Launch(block_n=n, num_warps=w, num_stages=st, waves=wv, block_m=m) for m, n, w, st, wv in grid]
    return [*found, Launch(half_partials=False)]


def load_baseline(path: str):
    """tree_attention from another version of the module (a file), to time as "before"."""
    spec = importlib.util.spec_from_file_location("tree_attention_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module.tree_attention


def sweep(
    shape: str, batch: int, n: int, p: int, candidates: list[Launch], bandwidth: float, baseline=None
) -> dict:
    hq, hkv, d = HEADS[shape]
    q, k, v, tree = _case(batch, n, p, hq, hkv, d, torch.bfloat16)
    scale, kv_len = d**-0.5, p + n
    run = lambda launch: tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale, launch=launch)
    want = run(DEFAULT_LAUNCH).float()
    timed = {}
    for launch in candidates:
        try:
            got = run(launch).float()
        except Exception as err:  # e.g. out of shared memory for this tile and stage count
            print(f"  skip {launch}: {str(err)[:80]}")
            continue
        if not torch.allclose(got, want, atol=2e-2, rtol=2e-2):
            raise AssertionError(f"{launch} disagrees with the default on {shape} b{batch} N{n} P{p}")
        timed[launch] = _time(lambda launch=launch: run(launch))
    floor = 2 * batch * (p + n) * hkv * d * 2 / bandwidth * 1e3
    best = min(timed, key=timed.get)
    default = timed[DEFAULT_LAUNCH] if DEFAULT_LAUNCH in timed else _time(lambda: run(DEFAULT_LAUNCH))
    top = sorted(timed.items(), key=lambda kv: kv[1])[:5]
    before = None
    if baseline is not None:
        old = lambda: baseline(q, k, v, tree.committed, tree.bits, kv_len, scale)
        if not torch.allclose(old().float(), want, atol=2e-2, rtol=2e-2):
            raise AssertionError(f"the baseline disagrees with the default on {shape} b{batch} N{n} P{p}")
        before = _time(old) * 1e3
    return {
        "shape": shape, "batch": batch, "n": n, "p": p, "floor_us": floor * 1e3,
        "before_us": before, "default_us": default * 1e3, "best_us": timed[best] * 1e3, "best": best.__dict__,
        "top5": [(launch.__dict__, ms * 1e3) for launch, ms in top],
        "float32_partials_us": timed.get(Launch(half_partials=False), float("nan")) * 1e3,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baseline", help="another tree_attention.py to time in the same run")
    args = ap.parse_args()
    baseline = load_baseline(args.baseline) if args.baseline else None
    bandwidth = copy_bandwidth("cuda")
    candidates = settings(args.quick)
    if DEFAULT_LAUNCH not in candidates:
        candidates.insert(0, DEFAULT_LAUNCH)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out / "tree_attention_sweep.jsonl", "w") as f:  # row by row: a time limit keeps what ran
        for case in CASES:
            rows.append(sweep(*case, candidates, bandwidth, baseline))
            f.write(json.dumps(rows[-1]) + "\n")
            f.flush()
            print(json.dumps(rows[-1]), flush=True)
    gpu = machine().get("gpu")
    lines = [f"Tree attention launch sweep, {gpu}, bf16, {len(candidates)} settings per case", ""]
    head = "shape | B | N | P | floor us | before us | default us | x floor | fp32 partials us | best us"
    lines += [f"| {head} | x floor | best setting |"]
    lines += ["|---" * 12 + "|"]
    for r in rows:
        b = r["best"]
        setting = ", ".join(f"{k} {v}" for k, v in b.items() if v != Launch.__dataclass_fields__[k].default)
        before = "" if r["before_us"] is None else f"{r['before_us']:.1f}"
        floor, default, best = r["floor_us"], r["default_us"], r["best_us"]
        cells = [r["shape"], r["batch"], r["n"], r["p"], f"{floor:.1f}", before, f"{default:.1f}"]
        cells += [f"{default / floor:.2f}", f"{r['float32_partials_us']:.1f}", f"{best:.1f}"]
        cells += [f"{best / floor:.2f}", setting or "the default"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (out / "tree_attention_sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
