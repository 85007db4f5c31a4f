"""A cost model for models that cannot be downloaded here: time plain decoding and tree verification for
a named shape with random weights on the GPU, and, given an accepted length measured on a real model,
print the speedup it would project (labelled as a projection everywhere).

    gorgon bench cost --shape llama-3-8b --tau 3.2 --tree-tokens 49
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

from gorgon.bench.spec import verify_cost
from gorgon.bench.timing import machine
from gorgon.errors import GorgonError
from gorgon.model.shapes import SHAPES

SIZES = [1, 2, 4, 8, 16, 32, 48, 64, 96, 128]


def project(costs: dict, tau: float, tree_tokens: int) -> dict:
    """Projected speedup of a method with accepted length `tau` verifying `tree_tokens` per step: tau
    tokens for one verify step instead of tau plain steps (drafting cost not included)."""
    size = min((n for n in costs["tree_ms"] if n >= tree_tokens), default=max(costs["tree_ms"]))
    step = costs["tree_ms"][size]
    return {
        "tau": tau,
        "tree_tokens": tree_tokens,
        "timed_tree_tokens": size,
        "verify_ms": step,
        "plain_ms": costs["plain_step_ms"],
        "projected_speedup": tau * costs["plain_step_ms"] / step,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="gorgon bench cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shape", default="llama-3-8b", choices=sorted(SHAPES))
    p.add_argument("--tau", type=float, default=None, help="accepted length measured on a real model")
    p.add_argument("--tree-tokens", type=int, default=32, help="tree size that tau was measured with")
    p.add_argument("--context", type=int, default=512, help="committed tokens before the tree")
    p.add_argument("--out", default="reports")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise GorgonError("the cost model times kernels on a CUDA GPU; none is visible")
    costs = verify_cost(args.shape, SIZES, torch.device("cuda"), args.context)
    plain = costs["plain_step_ms"]
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Cost model: {args.shape} shape, random bf16 weights, {costs['backend']} kernels, "
        f"{args.context}-token context ({now}, {info.get('gpu')})",
        "",
        "| tree tokens | " + " | ".join(map(str, SIZES)) + " |",
        "|---" * (len(SIZES) + 1) + "|",
        "| verify ms | " + " | ".join(f"{costs['tree_ms'][n]:.3f}" for n in SIZES) + " |",
        "| x plain step | " + " | ".join(f"{costs['tree_ms'][n] / plain:.2f}" for n in SIZES) + " |",
        "",
        f"Plain decode step: {costs['plain_step_ms']:.3f} ms.",
    ]
    record = {"kind": "cost", "time": now, "machine": info, "shape": args.shape, **costs}
    if args.tau is not None:
        proj = project(costs, args.tau, args.tree_tokens)
        record["projection"] = proj
        lines.append(
            f"PROJECTION (not a measurement): with tau {args.tau:.2f} over {args.tree_tokens}-token trees, "
            f"speedup ~{proj['projected_speedup']:.2f}x over plain decoding, drafting cost excluded."
        )
    text = "\n".join(lines) + "\n\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "benchmark.md", "a") as f:
        f.write(text)
    with open(out / "benchmark.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(text)


if __name__ == "__main__":
    main()
