"""Plain (non-speculative) decoding speed: Gorgon against transformers' `generate`, same run, same weights.

    python -m gorgon.bench.plain --device cpu            # default model, float32, batch 1, 128 tokens
    python -m gorgon.bench.plain --device cuda           # bf16: batch 1 and 64, and the Llama-3-8B shape

Appends a Markdown section to OUT/plain_decoding.md and a JSON line to OUT/plain_decoding.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

from gorgon import LLM, SamplingParams
from gorgon.bench.timing import copy_bandwidth, machine, median, repeat
from gorgon.model.shapes import random_model, shape
from gorgon.model.weights import resolve_model_path

PROMPT = "Write a detailed story about a lighthouse keeper who discovers a message in a bottle."


def load_transformers(device: torch.device, dtype: torch.dtype):
    """transformers' LlamaForCausalLM reading the default model's GGUF file (the same weights)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path("default")
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return model.to(device).eval()


def transformers_tps(model, prompt_ids: list[int], new: int, batch: int, repeats: int) -> list[float]:
    """Generated tokens per second of greedy `generate` (exactly `new` tokens per row)."""
    device = model.device
    ids = torch.tensor([prompt_ids] * batch, device=device)
    mask = torch.ones_like(ids)

    def run():
        with torch.inference_mode():
            model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                           pad_token_id=0)  # fmt: skip

    return [new * batch / t for t in repeat(run, repeats, device)]


def gorgon_tps(
    llm: LLM, prompt_ids: list[int], new: int, batch: int, repeats: int
) -> tuple[list[float], dict]:
    params = SamplingParams(max_tokens=new, temperature=0.0, ignore_eos=True)
    last = {}

    def run():
        last["out"] = llm.generate([prompt_ids] * batch, params)

    times = repeat(run, repeats, llm.device)
    return [new * batch / t for t in times], last["out"][0].stats


def row(name: str, ours: list[float], theirs: list[float] | None, extra: str = "") -> dict:
    r = {"case": name, "gorgon_tok_s": median(ours), "gorgon_runs": ours}
    if theirs:
        r.update(
            transformers_tok_s=median(theirs), transformers_runs=theirs, ratio=median(ours) / median(theirs)
        )
    if extra:
        r["note"] = extra
    return r


def bench_default(
    device: torch.device, dtype: torch.dtype, new: int, batches: list[int], repeats: int
) -> list[dict]:
    llm = LLM(model="default", device=device, dtype=dtype)
    ids = llm.tokenizer.encode(PROMPT)
    hf = load_transformers(device, dtype)
    rows = []
    for batch in batches:
        ours, stats = gorgon_tps(llm, ids, new, batch, repeats)
        theirs = transformers_tps(hf, ids, new, batch, max(1, repeats // 2) if batch > 1 else repeats)
        note = (
            f"decode-only {stats['decode_tokens_per_s'] * batch:.0f} tok/s, first token "
            f"{stats['time_to_first_token_s'] * 1e3:.1f} ms, kernels {llm.engine.runner.kernels}"
        )
        rows.append(
            row(f"SmolLM2-135M {dtype_name(dtype)}, batch {batch}, {new} new tokens", ours, theirs, note)
        )
    del llm, hf
    return rows


def bench_shape(
    name: str, device: torch.device, dtype: torch.dtype, new: int, repeats: int, with_hf: bool
) -> dict:
    """Random weights of a named shape: tokens/s and the fraction of the weight-reading floor achieved."""
    from gorgon.model.weights import open_checkpoint

    config = shape(name)
    model = random_model(config, device, dtype)
    llm = LLM.from_model(model, open_checkpoint("default").tokenizer())
    ids = list(range(1000, 1032))
    ours, stats = gorgon_tps(llm, ids, new, 1, repeats)
    bandwidth = copy_bandwidth(device)
    # Bytes a decode step must read: every weight once, except the embedding (one row is looked up).
    weight_bytes = (
        config.num_params - (0 if config.tie_embeddings else config.vocab_size * config.hidden_size)
    ) * (torch.finfo(dtype).bits // 8)
    floor_s = weight_bytes / bandwidth
    step_s = 1.0 / stats["decode_tokens_per_s"]
    del llm, model
    torch.cuda.empty_cache()
    theirs = None
    if with_hf:
        theirs = transformers_tps(_hf_random(config, device, dtype), ids, 32, 1, max(1, repeats // 2))
        torch.cuda.empty_cache()
    r = row(f"{name} shape, random {dtype_name(dtype)} weights, batch 1, {new} new tokens", ours, theirs)
    r.update(
        weight_gb=weight_bytes / 1e9,
        copy_bandwidth_tb_s=bandwidth / 1e12,
        floor_ms=floor_s * 1e3,
        decode_step_ms=step_s * 1e3,
        fraction_of_floor=floor_s / step_s,
    )
    r["note"] = (
        f"decode step {step_s * 1e3:.2f} ms; floor {floor_s * 1e3:.2f} ms ({weight_bytes / 1e9:.1f} GB at "
        f"{bandwidth / 1e12:.2f} TB/s measured): {100 * floor_s / step_s:.0f}% of the floor"
    )
    return r


def _hf_random(config, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position,
        tie_word_embeddings=config.tie_embeddings,
    )
    with torch.device(device):
        return LlamaForCausalLM(hf_cfg).to(dtype).eval()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def write_report(out: Path, title: str, rows: list[dict], settings: dict) -> str:
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {title} ({now})", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    lines += [
        "",
        "| case | Gorgon tok/s | transformers tok/s | Gorgon / transformers | note |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        theirs = f"{r['transformers_tok_s']:.1f}" if "transformers_tok_s" in r else "-"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        lines.append(f"| {r['case']} | {r['gorgon_tok_s']:.1f} | {theirs} | {ratio} | {r.get('note', '')} |")
    text = "\n".join(lines) + "\n\n"
    with open(out / "plain_decoding.md", "a") as f:
        f.write(text)
    with open(out / "plain_decoding.jsonl", "a") as f:
        f.write(
            json.dumps({"title": title, "time": now, "machine": info, "settings": settings, "rows": rows})
            + "\n"
        )
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="reports")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    p.add_argument("--tokens", type=int, default=None, help="new tokens per run")
    p.add_argument("--skip-8b", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        new, repeats = args.tokens or 128, args.repeats or 3
        rows = bench_default(device, torch.float32, new, [1], repeats)
        settings = {
            "device": "cpu",
            "dtype": "float32",
            "new_tokens": new,
            "repeats": repeats,
            "greedy": True,
        }
    else:
        new, repeats = args.tokens or 256, args.repeats or 5
        rows = bench_default(device, torch.bfloat16, new, [1, 64], repeats)
        if not args.skip_8b:
            rows.append(bench_shape("llama-3-8b", device, torch.bfloat16, 128, 3, with_hf=True))
        settings = {
            "device": "cuda",
            "dtype": "bfloat16",
            "new_tokens": new,
            "repeats": repeats,
            "greedy": True,
        }
    print(write_report(Path(args.out), "Plain decoding", rows, settings))


if __name__ == "__main__":
    main()
