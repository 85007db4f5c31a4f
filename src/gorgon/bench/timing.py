"""Honest timing: warm-up excluded, repeats, medians, and a description of the machine."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def repeat(
    fn: Callable[[], object], repeats: int, device: torch.device | str, warmup: int = 1
) -> list[float]:
    """Wall-clock seconds of `repeats` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def copy_bandwidth(device: torch.device | str, nbytes: int = 1 << 30) -> float:
    """Device memory bandwidth in bytes/s from a large copy, counting bytes read plus bytes written."""
    src = torch.randn(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    times = repeat(lambda: dst.copy_(src), 10, device, warmup=2)
    return 2 * src.numel() * 4 / median(times)


def matmul_throughput(
    device: torch.device | str, size: int = 8192, dtype: torch.dtype = torch.bfloat16
) -> float:
    """Dense matrix-product FLOP/s that the device sustains (cuBLAS, one square product): the compute side
    of a roofline, as copy_bandwidth is the memory side."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = repeat(lambda: a @ b, 10, device, warmup=2)
    return 2 * size**3 / median(times)


def machine() -> dict[str, str]:
    from gorgon import __version__

    info = {
        "gorgon": __version__,
        "cpu": _cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = str(torch.version.cuda)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
