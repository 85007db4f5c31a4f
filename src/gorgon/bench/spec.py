"""Speculative decoding speed: every drafter against Gorgon's own plain decoding, in the same run.

    python -m gorgon.bench.spec --device cpu --category summarization \\
        --methods plain,ngram:k=2,ngram:k=3,draft:layers=8:k=3
    python -m gorgon.bench.spec --device cuda --verify-cost     # also: tree verify cost vs a plain step

A method is `plain`, `ngram[:k=K][:b=BRANCHES][:nmin=N]`, or `draft[:layers=N|:model=PATH][:k=K][:b=W]`.
Methods share one loaded target; each prompt of the category runs alone (batch 1), greedily; methods
take turns within each repeat, and the median over repeats is reported. Appends to OUT/speculative.md
and OUT/speculative.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from gorgon import LLM, SamplingParams, SpecConfig
from gorgon.bench.prompts import CATEGORIES, messages
from gorgon.bench.timing import machine, median, sync


def parse_method(text: str) -> SpecConfig | None:
    """'plain' -> None; 'ngram:k=3:b=2:nmin=1', 'draft:layers=8:k=3', 'medusa[:heads=PATH]' or
    'eagle[:heads=PATH][:topk=8][:depth=6][:total=48][:vocab=N]' -> a SpecConfig; medusa and eagle also
    take ':lookup=K' (a prompt-lookup chain beside the heads' tree; 0: none)."""
    name, *opts = text.split(":")
    if name == "plain":
        return None
    kv = dict(o.split("=", 1) for o in opts)
    num = lambda key: int(kv[key]) if key in kv else None
    return SpecConfig(
        method=name,
        num_speculative_tokens=int(kv.get("k", 3)),
        num_branches=int(kv.get("b", 1)),
        prompt_lookup_min=int(kv.get("nmin", 2)),
        prompt_lookup_max=int(kv.get("nmax", 4)),
        draft_layers=num("layers"),
        draft_model=kv.get("model"),
        heads=kv.get("heads"),
        eagle_top_k=num("topk"),
        eagle_depth=num("depth"),
        eagle_total_tokens=num("total"),
        eagle_draft_vocab=num("vocab"),
        lookup=num("lookup"),
    )


def run_methods(
    base: LLM, methods: list[str], prompt_sets: dict[str, list[list[int]]], max_tokens: int, repeats: int
) -> list[dict]:
    """Rows per (category, method), and per method over all categories ("all"): median tokens/s over
    repeats, speedup over the first method (plain), tau, acceptance per position, greedy match rate."""
    llms = {m: LLM.from_model(base.model, base.tokenizer, speculative=parse_method(m)) for m in methods}
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    # Warm-up: every prompt once, untimed, so that each graph (one per attended-length bucket: long
    # prompts reach buckets short ones do not) is captured and each kernel compiled before any timing.
    for llm in llms.values():
        for prompts in prompt_sets.values():
            for prompt in prompts:
                llm.generate(prompt, params)
    times = {(c, m): [] for c in prompt_sets for m in methods}
    outputs: dict[tuple[str, str], list] = {}
    for _ in range(repeats):
        for m, llm in llms.items():
            for c, prompts in prompt_sets.items():
                elapsed, outs = 0.0, []
                for p in prompts:
                    sync(llm.device)
                    start = time.perf_counter()
                    outs.append(llm.generate(p, params)[0])
                    sync(llm.device)
                    elapsed += time.perf_counter() - start
                times[c, m].append(elapsed)
                outputs[c, m] = outs
    groups = {c: [c] for c in prompt_sets}
    if len(prompt_sets) > 1:
        groups["all"] = list(prompt_sets)
    rows = []
    for label, cats in groups.items():
        t = {m: median([sum(times[c, m][r] for c in cats) for r in range(repeats)]) for m in methods}
        for m in methods:
            outs = [o for c in cats for o in outputs[c, m]]
            ref = [o for c in cats for o in outputs[c, methods[0]]]
            rows.append(_row(label, m, outs, ref, t[m], t[methods[0]]))
    return rows


def _row(
    category: str, method: str, outs: list, reference: list, elapsed: float, plain_elapsed: float
) -> dict:
    tokens = sum(len(o.token_ids) for o in outs)
    steps = sum(o.stats["steps"] for o in outs)
    rates = [o.stats["acceptance_rate_per_position"] for o in outs if o.stats["acceptance_rate_per_position"]]
    width = min(map(len, rates)) if rates else 0
    return {
        "category": category,
        "method": method,
        "tok_s": tokens / elapsed,
        "speedup": plain_elapsed / elapsed,
        "tau": sum(len(o.token_ids) - 1 for o in outs) / steps if steps else 1.0,
        "acceptance_per_position": [sum(r[i] for r in rates) / len(rates) for i in range(width)],
        "greedy_match": sum(o.token_ids == r.token_ids for o, r in zip(outs, reference)) / len(outs),
        "tokens": tokens,
        "seconds": elapsed,
    }


@torch.inference_mode()
def verify_cost(shape_name: str, sizes: list[int], device: torch.device, context: int = 512) -> dict:
    """Milliseconds of one graphed target forward over a tree of N tokens (random parents, after a
    `context`-token context), and of one graphed plain decode step, for a model of the named shape with
    random weights."""
    from gorgon.kernels import TreeMask
    from gorgon.kv_cache import KVCache
    from gorgon.model.shapes import random_model, shape
    from gorgon.runner import ModelRunner
    from gorgon.sampling import SamplingTensors
    from gorgon.spec.tree import ancestor_matrix

    model = random_model(shape(shape_name), device, torch.bfloat16)
    runner = ModelRunner(model)
    st = SamplingTensors.build([SamplingParams(temperature=0.0)], [0], device)
    runner.reserve(1, context + 256)
    runner.start([list(range(100, 100 + context))], st)
    runner.decode(1, context)

    def step_ms(fn) -> float:
        graph = torch.cuda.CUDAGraph()
        fn()
        sync(device)
        with torch.cuda.graph(graph):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        samples = []
        for _ in range(5):
            start.record()
            for _ in range(20):
                graph.replay()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 20)
        return median(samples)

    plain = step_ms(runner._decode_fn(runner.buffers[1], context + 256))
    cache = KVCache(model.config, 1, context + 256, device, torch.bfloat16)
    out = {"shape": shape_name, "context": context, "plain_step_ms": plain, "tree_ms": {}}
    out["backend"] = runner.kernels
    for n in sizes:
        parents = torch.tensor([[0] + [int(torch.randint(0, i, ())) for i in range(1, n)]], device=device)
        anc = ancestor_matrix(parents)
        depths = anc.sum(-1) - 1
        committed = torch.tensor([context], device=device)
        tree = TreeMask(committed, anc)  # the registry's tree-attention kernel, as the engine runs it
        tokens = torch.randint(0, model.config.vocab_size, (1, n), device=device)
        slots = committed[:, None] + torch.arange(n, device=device)[None]

        def forward(tokens=tokens, depths=depths, slots=slots, tree=tree, kv_len=context + n):
            positions = tree.committed[:, None] + depths
            hidden = model(tokens, positions, cache, slots=slots, kv_len=kv_len, tree=tree).hidden
            model.logits(hidden)

        with torch.inference_mode():
            out["tree_ms"][n] = step_ms(forward)
    return out


def write_report(out: Path, title: str, settings: dict, rows: list[dict], costs: list[dict]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {title} ({now})", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    if rows:
        head = (
            "| category | method | tok/s | speedup vs plain | tau | acceptance per position | greedy match |"
        )
        lines += ["", head, "|---|---|---|---|---|---|---|"]
        for r in rows:
            acc = " ".join(f"{a:.2f}" for a in r["acceptance_per_position"][:8]) or "-"
            speed = [f"{r['tok_s']:.1f}", f"{r['speedup']:.2f}x", f"{r['tau']:.2f}"]
            cells = [r["category"], r["method"], *speed, acc, f"{100 * r['greedy_match']:.0f}%"]
            lines.append("| " + " | ".join(cells) + " |")
    for c in costs:
        sizes = list(c["tree_ms"])
        ms = " | ".join(f"{c['tree_ms'][n]:.3f}" for n in sizes)
        ratio = " | ".join(f"{c['tree_ms'][n] / c['plain_step_ms']:.2f}" for n in sizes)
        header = "| tree tokens | " + " | ".join(map(str, sizes)) + " |"
        lines += ["", f"Verify cost, {c['shape']} shape (bf16, random weights, 512-token context, graphed):",
                  "", header, "|---" * (len(sizes) + 1) + "|",
                  f"| ms | {ms} |", f"| x plain step | {ratio} |",
                  "", f"(plain decode step: {c['plain_step_ms']:.3f} ms)"]  # fmt: skip
    text = "\n".join(lines) + "\n\n"
    with open(out / "speculative.md", "a") as f:
        f.write(text)
    with open(out / "speculative.jsonl", "a") as f:
        f.write(json.dumps({"title": title, "time": now, "machine": info, "settings": settings, "rows": rows,
                            "verify_cost": costs}) + "\n")  # fmt: skip
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--model", default="default")
    p.add_argument("--category", default="summarization",
                   help=f"comma-separated, or 'all': {', '.join(sorted(CATEGORIES))}")  # fmt: skip
    p.add_argument("--methods", default="plain,ngram:k=2,ngram:k=3,draft:layers=8:k=3")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--verify-cost", action="store_true", help="GPU: time tree verification at 1..128 tokens")
    p.add_argument("--out", default="reports")
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    if methods[0] != "plain":
        methods.insert(0, "plain")
    base = LLM(model=args.model, device=args.device, dtype=args.dtype)
    names = sorted(CATEGORIES) if args.category == "all" else args.category.split(",")
    prompt_sets = {
        c: [base.tokenizer.apply_chat_template(m, tokenize=True) for m in messages(c)] for c in names
    }
    rows = run_methods(base, methods, prompt_sets, args.max_tokens, args.repeats)
    costs = []
    if args.verify_cost and base.device.type == "cuda":
        del base
        costs = [
            verify_cost(s, [1, 16, 32, 64, 128], torch.device("cuda")) for s in ("smollm2-135m", "llama-3-8b")
        ]
    settings = {"device": args.device, "category": args.category, "max_tokens": args.max_tokens,
                "repeats": args.repeats, "greedy": True, "batch": 1}  # fmt: skip
    print(write_report(Path(args.out), "Speculative decoding", settings, rows, costs))


if __name__ == "__main__":
    main()
