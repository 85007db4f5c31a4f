"""Time one decode step on the GPU: a replayed CUDA graph against eager execution, per shape and batch.

    python -m gorgon.bench.step --shapes smollm2-135m,llama-3-8b --batches 1,64

For each case: the median time of a step (CUDA events around many replays), and from one profiled
eager step the number of kernels and the sum of their durations, which says how much of a step is
the GPU working and how much is launch latency.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from gorgon.bench.timing import median
from gorgon.config import SamplingParams
from gorgon.model.shapes import random_model, shape
from gorgon.runner import ModelRunner
from gorgon.sampling import SamplingTensors


def step_time_ms(runner: ModelRunner, batch: int, prompt: int, steps: int = 25, rounds: int = 5) -> float:
    """Median milliseconds per decode step, timed over `steps` consecutive replays, `rounds` times.

    Keep prompt + rounds * steps inside one attended-length bucket, or a capture lands in the timing."""
    ids = [list(range(100, 100 + prompt))] * batch
    sampling = SamplingTensors.build([SamplingParams(temperature=0.0)] * batch, [0] * batch, runner.device)
    runner.reserve(batch, prompt + rounds * (steps + 5) + 64)
    runner.start(ids, sampling)
    pos = prompt
    runner.decode(batch, pos)  # capture (or warm up) outside the timing
    pos += 1
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            runner.decode(batch, pos)
            pos += 1
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / steps)
    return median(times)


def kernel_profile(runner: ModelRunner, batch: int, prompt: int) -> dict:
    """Kernels launched by one eager decode step, and their summed GPU time."""
    from torch.profiler import ProfilerActivity, profile

    graphs = runner.use_graphs
    runner.use_graphs = False
    step_time_ms(runner, batch, prompt, steps=2, rounds=1)  # sets up the buffers, compiles the kernels
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        runner.decode(batch, prompt + 10)
        torch.cuda.synchronize()
    runner.use_graphs = graphs
    rows = prof.key_averages()
    cuda = torch.autograd.DeviceType.CUDA
    kernels = sorted((a for a in rows if a.device_type == cuda), key=lambda a: -a.self_device_time_total)
    return {
        "kernels": sum(a.count for a in kernels),
        "kernel_ms": sum(a.self_device_time_total for a in rows) / 1e3,
        "top": [(a.key[:80], a.count, round(a.self_device_time_total, 1)) for a in kernels[:12]],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="smollm2-135m,llama-3-8b")
    p.add_argument("--batches", default="1,64")
    # 100 + 1 + 5 * 25 positions stay under the first 256-slot bucket: no capture inside the timing
    p.add_argument("--prompt", type=int, default=100)
    p.add_argument("--out", default=None, help="append JSON lines here")
    p.add_argument(
        "--kernels", default="triton,reference", help="backends to compare (GORGON_ATTENTION values)"
    )
    args = p.parse_args(argv)
    rows = []
    for name in args.shapes.split(","):
        model = random_model(shape(name), torch.device("cuda"), torch.bfloat16)
        for batch, backend in [(int(b), k) for b in args.batches.split(",") for k in args.kernels.split(",")]:
            os.environ["GORGON_ATTENTION"] = backend
            row = {"shape": name, "batch": batch, "prompt": args.prompt, "kernels_backend": None}
            for graphs in (True, False):
                runner = ModelRunner(model, cuda_graphs=graphs)
                row["kernels_backend"] = runner.kernels
                row["graph_ms" if graphs else "eager_ms"] = step_time_ms(runner, batch, args.prompt)
                del runner
            row.update(kernel_profile(ModelRunner(model, cuda_graphs=False), batch, args.prompt))
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()
    print("\n| shape | batch | kernels | graph ms/step | eager ms/step | kernels/step | kernel time ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["shape"], r["batch"], r["kernels_backend"], f"{r['graph_ms']:.3f}", f"{r['eager_ms']:.3f}",
                 r["kernels"], f"{r['kernel_ms']:.3f}"]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
