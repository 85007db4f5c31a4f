"""Sweep the Triton tree-attention kernel's launch settings on a GPU (bf16, full top-4 trees).

    python scripts/tree_attention_sweep.py [--out DIR] [--quick]

For each case: the default Launch's time, the best setting found, and both against the memory floor
(K/V bytes over the measured copy bandwidth), so that the defaults can be chosen from measurements.
Every setting's output is checked against the default's before it is timed.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

from gorgon.bench.kernels import HEADS, _case, _time
from gorgon.bench.timing import copy_bandwidth, machine
from gorgon.kernels.tree_attention import DEFAULT_LAUNCH, Launch, tree_attention

CASES = [  # (shape, batch, N, P)
    ("llama-3-8b", 1, 1, 8192), ("llama-3-8b", 1, 16, 8192), ("llama-3-8b", 1, 64, 8192),
    ("llama-3-8b", 1, 64, 2048), ("llama-3-8b", 8, 1, 8192), ("llama-3-8b", 8, 16, 8192),
    ("llama-3-8b", 8, 64, 2048), ("smollm2-135m", 1, 16, 8192), ("smollm2-135m", 1, 64, 8192),
    ("smollm2-135m", 1, 32, 512),
]  # fmt: skip


def settings(quick: bool) -> list[Launch]:
    if quick:
        grid = itertools.product((64, 128), (4, 8), (None, 3), (2, 4), (256,))
    else:
        grid = itertools.product((64, 128), (4, 8), (None, 3, 4), (1, 2, 4, 8), (128, 256))
    return [Launch(bn, w, st, wv, ms) for bn, w, st, wv, ms in grid]


def sweep(shape: str, batch: int, n: int, p: int, candidates: list[Launch], bandwidth: float) -> dict:
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
    return {
        "shape": shape, "batch": batch, "n": n, "p": p, "floor_us": floor * 1e3,
        "default_us": default * 1e3, "best_us": timed[best] * 1e3, "best": best.__dict__,
        "top5": [(launch.__dict__, ms * 1e3) for launch, ms in top],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    bandwidth = copy_bandwidth("cuda")
    candidates = settings(args.quick)
    if DEFAULT_LAUNCH not in candidates:
        candidates.insert(0, DEFAULT_LAUNCH)
    rows = []
    for case in CASES:
        row = sweep(*case, candidates, bandwidth)
        rows.append(row)
        print(json.dumps(row), flush=True)
    gpu = machine().get("gpu")
    lines = [f"Tree attention launch sweep, {gpu}, bf16, {len(candidates)} settings per case", ""]
    lines += ["| shape | B | N | P | floor us | default us | x floor | best us | x floor | best setting |"]
    lines += ["|---" * 10 + "|"]
    for r in rows:
        b = r["best"]
        setting = ", ".join(f"{k} {v}" for k, v in b.items())
        cells = [r["shape"], r["batch"], r["n"], r["p"], f"{r['floor_us']:.1f}", f"{r['default_us']:.1f}"]
        cells += [f"{r['default_us'] / r['floor_us']:.2f}", f"{r['best_us']:.1f}"]
        cells += [f"{r['best_us'] / r['floor_us']:.2f}", setting]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tree_attention_sweep.md").write_text("\n".join(lines) + "\n")
    with open(out / "tree_attention_sweep.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
