"""`gorgon bench`: methods x prompt sets, against plain decoding and transformers, in one run.

    gorgon bench --methods plain,ngram:k=4,eagle,hf,hf-lookup --prompts all --max-tokens 128 --repeats 3
    gorgon bench --methods plain,ngram --sweep num_speculative_tokens=1,2,4,8

Methods: `plain`, Gorgon's speculative methods in `gorgon.bench.spec.parse_method` syntax (`ngram:k=4`,
`draft:layers=8:k=3`, `medusa`, `eagle:total=32`, ...), and the baselines people would otherwise use on
the same weights: `hf` (transformers `generate`, greedy) and `hf-lookup` (transformers assisted
generation by prompt lookup). Prompts: built-in categories (`all`, or a comma-separated list), or a JSONL
file in the Spec-Bench / MT-bench format (`question_id`, `category`, `turns`: multi-turn conversations
answered turn by turn) or with one `{"prompt": ...}` per line. Each generation is greedy, alone (batch 1).

Each run appends a section to OUT/benchmark.md, a line to OUT/benchmark.jsonl, and PNG plots beside
them (speedup per category and method, acceptance per position, and the sweep curves).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from gorgon import LLM, SamplingParams
from gorgon.bench.prompts import CATEGORIES
from gorgon.bench.spec import parse_method
from gorgon.bench.timing import machine, sync
from gorgon.errors import GorgonError

BASELINES = ("hf", "hf-lookup")
LOOKUP_TOKENS = 10  # transformers' prompt_lookup_num_tokens for hf-lookup


@dataclass
class Conversation:
    id: str
    category: str
    turns: list[str]


@dataclass
class Generation:
    """One timed generation (one turn of one conversation)."""

    tokens: list[int]
    seconds: float
    ttft: float | None
    steps: int
    rates: list[float] = field(default_factory=list)


def builtin(categories: str) -> list[Conversation]:
    names = sorted(CATEGORIES) if categories == "all" else categories.split(",")
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise GorgonError(f"unknown prompt categories {unknown}; known: {', '.join(sorted(CATEGORIES))}")
    return [Conversation(f"{c}-{i}", c, [p]) for c in names for i, p in enumerate(CATEGORIES[c])]


def load_prompts(path: str | Path) -> list[Conversation]:
    """Conversations from a Spec-Bench / MT-bench JSONL file, or one {"prompt": ...} per line."""
    path = Path(path)
    if not path.is_file():
        raise GorgonError(f"prompt file {path} not found")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise GorgonError(f"{path}:{n}: not valid JSON: {e}") from None
        if row.get("turns"):
            out.append(
                Conversation(
                    str(row.get("question_id", n)), row.get("category", "custom"), list(row["turns"])
                )
            )
        elif "prompt" in row:
            out.append(Conversation(str(row.get("id", n)), row.get("category", "custom"), [row["prompt"]]))
        else:
            raise GorgonError(f"{path}:{n}: a line needs 'turns' (Spec-Bench) or 'prompt'")
    return out


class GorgonMethod:
    def __init__(self, name: str, llm: LLM):
        self.name, self.llm = name, llm

    def generate(self, ids: list[int], max_tokens: int) -> Generation:
        sync(self.llm.device)
        start = time.perf_counter()
        out = self.llm.generate(ids, SamplingParams(max_tokens=max_tokens, temperature=0.0))[0]
        sync(self.llm.device)
        s = out.stats
        return Generation(
            out.token_ids,
            time.perf_counter() - start,
            s["time_to_first_token_s"],
            s["steps"],
            s["acceptance_rate_per_position"],
        )


class HFMethod:
    """transformers' own generate on the same weights: greedy, or with prompt-lookup assistance."""

    def __init__(self, name: str, model, device: torch.device, eos: tuple[int, ...]):
        self.name, self.model, self.device, self.eos = name, model, device, list(eos)

    def _run(self, ids: list[int], max_tokens: int) -> list[int]:
        x = torch.tensor([ids], device=self.device)
        extra = {"prompt_lookup_num_tokens": LOOKUP_TOKENS} if self.name == "hf-lookup" else {}
        with torch.inference_mode():
            out = self.model.generate(
                x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=self.eos or None,
                pad_token_id=0,
                **extra,
            )
        return out[0, len(ids) :].tolist()

    def generate(self, ids: list[int], max_tokens: int) -> Generation:
        sync(self.device)
        start = time.perf_counter()
        self._run(ids, 1)
        sync(self.device)
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        tokens = self._run(ids, max_tokens)
        sync(self.device)
        return Generation(tokens, time.perf_counter() - start, ttft, len(tokens))


def load_transformers(llm: LLM):
    from transformers import AutoModelForCausalLM

    path = llm.checkpoint.path
    if llm.checkpoint.format == "gguf":
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=llm.dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=llm.dtype)
    return model.to(llm.device).eval()


def build_methods(base: LLM, names: list[str]) -> list:
    methods, hf = [], None
    for name in names:
        if name in BASELINES:
            hf = hf or load_transformers(base)
            methods.append(HFMethod(name, hf, base.device, base.tokenizer.eos_token_ids))
        else:
            spec = parse_method(name) if isinstance(name, str) else name[1]
            label = name if isinstance(name, str) else name[0]
            methods.append(GorgonMethod(label, LLM.from_model(base.model, base.tokenizer, speculative=spec)))
    return methods


def sweep_names(methods: list[str], sweep: str | None) -> list:
    """Method names, with every speculative method repeated once per value of the swept setting."""
    if not sweep:
        return methods
    key, values = sweep.split("=", 1)
    if key not in {f.name for f in dataclasses.fields(parse_method("ngram"))}:
        raise GorgonError(f"--sweep: {key!r} is not a SpecConfig setting")
    out = []
    for m in methods:
        if m == "plain" or m in BASELINES:
            out.append(m)
            continue
        for v in values.split(","):
            spec = dataclasses.replace(parse_method(m), **{key: int(v) if v.isdigit() else v})
            out.append((f"{m}[{key}={v}]", spec))
    return out


def prompt_ids(llm: LLM, history: list[dict[str, str]]) -> list[int]:
    if llm.tokenizer.chat_template:
        return llm.tokenizer.apply_chat_template(history, tokenize=True)
    return llm.tokenizer.encode("\n\n".join(m["content"] for m in history))


def run(
    base: LLM,
    methods: list,
    conversations: list[Conversation],
    max_tokens: int,
    repeats: int,
    progress: bool = True,
    warmup_passes: int = 0,
) -> dict[str, dict[str, list[Generation]]]:
    """Generations per method and category for the last repeat, with each repeat's total seconds in
    `times[method][category]`. Warm-up first: a short generation per method, then `warmup_passes`
    untimed passes over every prompt. On a GPU the short one does not meet every attended-length bucket
    the prompts reach, and a graph captured (or a kernel compiled) inside a timed pass cost up to 1.3 s
    there, against 0.05 s for the whole request (reports/h100-2026-11-26c/README.md)."""
    warm = prompt_ids(base, [{"role": "user", "content": conversations[0].turns[0]}])
    for m in methods:
        m.generate(warm, 8)
        for _ in range(warmup_passes):
            _generate_all(base, m, conversations, max_tokens)
    results: dict = {"generations": {}, "times": {}, "peak_mb": {}}
    total = repeats * len(methods) * sum(len(c.turns) for c in conversations)
    with tqdm(total=total, desc="bench", disable=not progress) as bar:
        for _ in range(repeats):
            for m in methods:
                if base.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                gens = _generate_all(base, m, conversations, max_tokens, bar=bar)
                times = results["times"].setdefault(m.name, {})
                for cat, gs in gens.items():
                    times.setdefault(cat, []).append(sum(g.seconds for g in gs))
                results["generations"][m.name] = gens
                results["peak_mb"][m.name] = _peak_mb(base.device)
    return results


def _generate_all(
    base: LLM, method, conversations: list[Conversation], max_tokens: int, bar: tqdm | None = None
) -> dict[str, list[Generation]]:
    """Every conversation, turn by turn (multi-turn: each answer joins the history, as in Spec-Bench)."""
    gens: dict[str, list[Generation]] = {}
    for conv in conversations:
        history: list[dict[str, str]] = []
        for turn in conv.turns:
            history.append({"role": "user", "content": turn})
            g = method.generate(prompt_ids(base, history), max_tokens)
            gens.setdefault(conv.category, []).append(g)
            history.append({"role": "assistant", "content": base.tokenizer.decode(g.tokens)})
            if bar is not None:
                bar.update(1)
    return gens


def _match(mine: list[Generation], plain: list[Generation]) -> float:
    return sum(a.tokens == b.tokens for a, b in zip(mine, plain)) / len(mine)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the whole process, in MB


def summarize(results: dict, names: list[str]) -> list[dict]:
    """One row per (category, method), plus "all" over categories."""
    gens, times = results["generations"], results["times"]
    cats = list(next(iter(gens.values())).keys())
    groups = {c: [c] for c in cats} | ({"all": cats} if len(cats) > 1 else {})
    rows = []
    for label, group in groups.items():
        total = {m: statistics.median(map(sum, zip(*(times[m][c] for c in group)))) for m in names}
        for m in names:
            mine = [g for c in group for g in gens[m][c]]
            plain = [g for c in group for g in gens["plain"][c]] if "plain" in gens else None
            tokens = sum(len(g.tokens) for g in mine)
            lat = sorted(g.seconds for g in mine)
            steps = sum(g.steps for g in mine)
            rates = [g.rates for g in mine if g.rates]
            width = min(map(len, rates)) if rates else 0
            rows.append(
                {
                    "category": label,
                    "method": m,
                    "tok_s": tokens / total[m],
                    "tokens": tokens,
                    "seconds": total[m],
                    "tau": None if m in BASELINES else sum(len(g.tokens) - 1 for g in mine) / max(1, steps),
                    "acceptance_per_position": [sum(r[i] for r in rates) / len(rates) for i in range(width)],
                    "ttft_s": statistics.median(g.ttft for g in mine if g.ttft is not None),
                    "latency_p50_s": lat[len(lat) // 2],
                    "latency_p90_s": lat[min(len(lat) - 1, int(0.9 * len(lat)))],
                    "peak_memory_mb": results["peak_mb"][m],
                    "speedup_vs_plain": total["plain"] / total[m] if "plain" in total else None,
                    "speedup_vs_hf": total["hf"] / total[m] if "hf" in total else None,
                    "greedy_match": None if plain is None else _match(mine, plain),
                }
            )
    return rows


# ------------------------------------------------------------------------------------------ reports


def write_report(out: Path, rows: list[dict], settings: dict, sweep: str | None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    stamp = now.replace(" ", "_").replace(":", "")
    plots = _plots(out, rows, stamp, sweep)
    lines = [
        f"## Benchmark ({now})",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
        "| category | method | tok/s | vs plain | vs transformers | tau | acceptance per position "
        "| first token ms | p50 / p90 s | peak MB | greedy match |",
        "|---" * 11 + "|",
    ]
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in rows:
        acc = " ".join(f"{a:.2f}" for a in r["acceptance_per_position"][:6]) or "-"
        match = "-" if r["greedy_match"] is None else f"{100 * r['greedy_match']:.0f}%"
        cells = [
            r["category"],
            r["method"],
            f"{r['tok_s']:.1f}",
            fmt(r["speedup_vs_plain"], ".2f"),
            fmt(r["speedup_vs_hf"], ".2f"),
            fmt(r["tau"], ".2f"),
            acc,
            f"{1e3 * r['ttft_s']:.1f}",
            f"{r['latency_p50_s']:.2f} / {r['latency_p90_s']:.2f}",
            f"{r['peak_memory_mb']:.0f}",
            match,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"![{p.stem}]({p.name})" for p in plots)]
    text = "\n".join(lines) + "\n\n"
    with open(out / "benchmark.md", "a") as f:
        f.write(text)
    with open(out / "benchmark.jsonl", "a") as f:
        record = {
            "kind": "run",
            "time": now,
            "machine": info,
            "settings": settings,
            "rows": rows,
            "plots": [p.name for p in plots],
        }
        f.write(json.dumps(record) + "\n")
    return text


def _plots(out: Path, rows: list[dict], stamp: str, sweep: str | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    cats = list(dict.fromkeys(r["category"] for r in rows))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "plain"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats) * max(1, len(methods)) / 2), 4))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        ys = [
            next((r["speedup_vs_plain"] or 0 for r in rows if r["category"] == c and r["method"] == m), 0)
            for c in cats
        ]
        ax.bar([x + i * width for x in range(len(cats))], ys, width, label=m)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks([x + width * (len(methods) - 1) / 2 for x in range(len(cats))], cats)
    ax.set_ylabel("speedup over plain decoding")
    _legend(ax)
    paths.append(_save(fig, out / f"speedup_{stamp}.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r["category"] == cats[-1] and r["acceptance_per_position"]:
            ax.plot(
                range(1, len(r["acceptance_per_position"]) + 1),
                r["acceptance_per_position"],
                marker="o",
                label=r["method"],
            )
    ax.set_xlabel("draft position")
    ax.set_ylabel(f"acceptance rate ({cats[-1]})")
    ax.set_ylim(0, 1)
    _legend(ax)
    paths.append(_save(fig, out / f"acceptance_{stamp}.png"))
    if sweep:
        key = sweep.split("=", 1)[0]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        series: dict[str, list[tuple[float, float, float]]] = {}
        for r in rows:
            if r["category"] == cats[-1] and "[" in r["method"]:
                base, value = r["method"][:-1].split("[", 1)
                series.setdefault(base, []).append(
                    (float(value.split("=")[1]), r["speedup_vs_plain"] or 0, r["tau"] or 0)
                )
        for base, pts in series.items():
            pts.sort()
            a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=base)
            a2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=base)
        a1.set_xlabel(key), a1.set_ylabel("speedup over plain"), a2.set_xlabel(key), a2.set_ylabel("tau")
        _legend(a1)
        paths.append(_save(fig, out / f"sweep_{key}_{stamp}.png"))
    return paths


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="gorgon bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--methods", default="plain,ngram:k=4,hf,hf-lookup")
    p.add_argument("--prompts", default="all", help="'all', categories (comma-separated), or a JSONL file")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--warmup-passes", type=int, default=None,
        help="untimed passes over every prompt before timing (default: 1 on a GPU, 0 on the CPU)",
    )  # fmt: skip
    p.add_argument("--sweep", default=None, help="SETTING=V1,V2,...: e.g. num_speculative_tokens=1,2,4,8")
    p.add_argument("--out", default="reports")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    names = args.methods.split(",")
    if "plain" not in names:
        names.insert(0, "plain")
    base = LLM(model=args.model, device=args.device, dtype=args.dtype)
    from_file = Path(args.prompts).is_file()
    conversations = load_prompts(args.prompts) if from_file else builtin(args.prompts)
    methods = build_methods(base, sweep_names(names, args.sweep))
    warmup = args.warmup_passes if args.warmup_passes is not None else int(base.device.type == "cuda")
    results = run(
        base, methods, conversations, args.max_tokens, args.repeats, not args.no_progress, warmup
    )  # fmt: skip
    rows = summarize(results, [m.name for m in methods])
    model = str(base.checkpoint.path if base.checkpoint else args.model)
    settings = {
        "model": model,
        "device": str(base.device),
        "dtype": str(base.dtype).removeprefix("torch."),
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "warmup_passes": warmup,
        "greedy": True,
        "batch": 1,
        "sweep": args.sweep,
        "backend": methods[0].llm.engine.runner.kernels,
    }
    print(write_report(Path(args.out), rows, settings, args.sweep))


if __name__ == "__main__":
    main()
