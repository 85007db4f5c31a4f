"""What one speculative step costs, per drafter configuration, relative to a plain decode step.

    python -m gorgon.bench.step_cost --methods plain,medusa,eagle:depth=4:total=32 --profile

Random weights of a shape (the default model's by default), random heads: the cost of a step does not
depend on what the heads learned, only on their shapes and the tree's, so this needs no download and no
trained heads. On a GPU each step is replayed as the engine replays it (one CUDA graph), timed with CUDA
events over many replays (median of rounds, warm-up excluded). `--profile` adds, from one eager step
under the PyTorch profiler, the GPU kernel time of each phase (draft, verify forward, logits, accept,
drafter update, the rest), which says where a step's time goes.

Dividing a method's tau (measured on the real model: `gorgon bench`) by its cost ratio predicts its
speedup over plain decoding; `gorgon bench` measures that speedup directly.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from gorgon.bench.spec import parse_method
from gorgon.bench.timing import machine, median
from gorgon.config import SamplingParams, SpecConfig
from gorgon.model.llama import Llama
from gorgon.model.shapes import random_model, shape
from gorgon.runner import ModelRunner
from gorgon.sampling import SamplingTensors
from gorgon.spec.drafters import Drafter
from gorgon.spec.drafters.lookup import with_lookup

PHASES = {"propose": "draft", "update": "update"}


def random_drafter(spec: SpecConfig | None, model: Llama) -> Drafter | None:
    """The drafter `spec` names, with randomly initialised heads of the shipped shapes (and the shipped
    lookup chain's length unless `spec` names one)."""
    drafter = _random_heads(spec, model)
    if spec is None or spec.method not in ("medusa", "eagle"):
        return drafter
    return with_lookup(drafter, spec, shipped_config(spec.method))


def _random_heads(spec: SpecConfig | None, model: Llama) -> Drafter | None:
    from gorgon.heads.eagle import EagleConfig, EagleLayer
    from gorgon.heads.medusa import MedusaConfig, MedusaHeads
    from gorgon.spec.drafters import build_drafter
    from gorgon.spec.drafters.eagle import EagleDrafter
    from gorgon.spec.drafters.medusa import MedusaDrafter

    if spec is None or spec.method not in ("medusa", "eagle"):
        return None if spec is None else build_drafter(spec, model, None)  # type: ignore[arg-type]
    weight = model.embed.weight
    cfg = model.config
    if spec.method == "medusa":
        tree = tuple(tuple(path) for path in shipped_config("medusa").get("tree", []))
        heads = MedusaHeads(MedusaConfig(hidden_size=cfg.hidden_size, tree=tree))
        return MedusaDrafter(model, heads.to(weight.device, weight.dtype).eval().requires_grad_(False))
    eagle = EagleConfig.from_json({**shipped_config("eagle"), "hidden_size": cfg.hidden_size})
    for name in ("top_k", "depth", "total_tokens"):
        value = getattr(spec, f"eagle_{name}")
        if value is not None:
            setattr(eagle, name, value)
    eagle.draft_vocab = tuple(range(spec.eagle_draft_vocab or 0))  # a draft vocabulary of that size
    layer = EagleLayer(cfg).to(weight.device, weight.dtype).eval().requires_grad_(False)
    return EagleDrafter(model, layer, eagle)


def shipped_config(kind: str) -> dict:
    """The default model's shipped heads' settings (tree, top_k, depth, ...): the shapes that
    `--method medusa|eagle` runs with."""
    from importlib.resources import files

    path = files("gorgon.heads") / "weights" / "smollm2-135m-instruct" / f"{kind}.json"
    return json.loads(path.read_text())[kind] if path.is_file() else {}


def _prefill(runner: ModelRunner, prompt: int, capacity: int) -> None:
    sampling = SamplingTensors.build([SamplingParams(temperature=0.0)], [0], runner.device)
    runner.reserve(1, capacity)
    runner.start([list(range(100, 100 + prompt))], sampling)


def step_ms(runner: ModelRunner, prompt: int, steps: int = 20, rounds: int = 5) -> float:
    """Median milliseconds of one step (spec or plain) at context ~`prompt`, graphs as the engine uses
    them. Each round starts from the same prefilled state, so every step attends the same bucket."""
    spec = runner.drafter is not None
    depth = runner.drafter.max_depth + 1 if spec else 1
    _prefill(runner, prompt, prompt + 2 * (steps + 2) * depth + 512)

    def one() -> None:
        if spec:
            runner.spec_step(1, prompt + (steps + 2) * depth)
        else:
            runner.decode(1, prompt + steps + 2)

    one()  # capture (or compile) outside the timing
    cuda = runner.device.type == "cuda"
    times = []
    for _ in range(rounds):
        _prefill(runner, prompt, prompt + 2 * (steps + 2) * depth + 512)
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                one()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / steps)
        else:
            import time

            t0 = time.perf_counter()
            for _ in range(steps):
                one()
            times.append((time.perf_counter() - t0) * 1e3 / steps)
    return median(times)


def phase_profile(runner: ModelRunner, prompt: int) -> dict[str, dict[str, float]]:
    """GPU kernel count and time (us) per phase of one eager step, from the PyTorch profiler."""
    from torch.profiler import ProfilerActivity, profile, record_function

    graphs, runner.use_graphs = runner.use_graphs, False
    model, drafter = runner.model, runner.drafter
    wrapped = [(model, "forward", "verify forward"), (model, "logits", "logits")]
    wrapped += [(drafter, name, phase) for name, phase in PHASES.items()] if drafter else []
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in wrapped]
    for obj, name, phase in wrapped:
        setattr(obj, name, _marked(getattr(obj, name), phase, record_function))
    try:
        step_ms(runner, prompt, steps=2, rounds=1)  # compile everything first
        _prefill(runner, prompt, prompt + 512)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            if drafter is not None:
                runner.spec_step(1, prompt + 64)
            else:
                runner.decode(1, prompt + 1)
            torch.cuda.synchronize()
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        runner.use_graphs = graphs
    return _by_phase(prof.events(), {phase for _, _, phase in wrapped})


def _marked(fn, phase, record_function):
    def call(*args, **kwargs):
        with record_function(f"phase::{phase}"):
            return fn(*args, **kwargs)

    return call


def _by_phase(events, phases: set[str]) -> dict[str, dict[str, float]]:
    """Sum each kernel into the innermost phase range enclosing the op that launched it."""
    out: dict[str, dict] = defaultdict(lambda: {"kernels": 0, "us": 0.0, "top": defaultdict(float)})
    for evt in events:
        if not evt.kernels:
            continue
        phase, up = "other", evt
        while up is not None:
            if up.name.startswith("phase::") and up.name[7:] in phases:
                phase = up.name[7:]
                break
            up = up.cpu_parent
        for k in evt.kernels:
            out[phase]["kernels"] += 1
            out[phase]["us"] += k.duration
            out[phase]["top"][f"{evt.name[:40]}: {k.name[:60]}"] += k.duration
    for v in out.values():  # the ten costliest (op: kernel) pairs of each phase
        v["top"] = dict(sorted(v["top"].items(), key=lambda kv: -kv[1])[:10])
    return dict(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="smollm2-135m")
    p.add_argument("--methods", default="plain,medusa,eagle,eagle:depth=4:total=32,eagle:depth=3:total=24")
    p.add_argument("--prompt", type=int, default=300, help="committed context when timing")
    p.add_argument("--profile", action="store_true", help="also the kernel time of each phase")
    p.add_argument("--out", default=None, help="append JSON lines and a markdown table under this folder")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = random_model(shape(args.shape), device, dtype)
    rows = []
    for method in args.methods.split(","):
        runner = ModelRunner(model, drafter=random_drafter(parse_method(method), model))
        row = {"method": method, "shape": args.shape, "device": machine().get("gpu") or "cpu"}
        row["ms"] = step_ms(runner, args.prompt)
        if runner.drafter is not None:
            row["tree_tokens"] = runner.drafter.tree_size
        if args.profile and device.type == "cuda":
            row["phases"] = phase_profile(runner, args.prompt)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del runner
    plain = next((r["ms"] for r in rows if r["method"] == "plain"), None)
    lines = [f"Step cost, {args.shape} shape, random weights, {rows[0]['device']}, context {args.prompt}", ""]
    lines += ["| method | tree tokens | ms/step | x plain step | kernel us (count) by phase |"]
    lines += ["|---|---|---|---|---|"]
    for r in rows:
        phases = ", ".join(
            f"{k} {v['us']:.0f} ({v['kernels']})" for k, v in sorted(r.get("phases", {}).items())
        )
        ratio = f"{r['ms'] / plain:.2f}" if plain else "-"
        lines.append(f"| {r['method']} | {r.get('tree_tokens', 1)} | {r['ms']:.3f} | {ratio} | {phases} |")
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "step_cost.jsonl", "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with open(out / "step_cost.md", "a") as f:
            f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
