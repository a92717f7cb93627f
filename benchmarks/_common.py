"""Helpers shared by the benchmark scripts: machine description and their README sections."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import torch

from mp3net.utils import atomic_write_text

README = Path(__file__).resolve().parent / "README.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(name: str, section: str) -> None:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in benchmarks/README.md
    (``section`` includes both markers), or append it; other scripts' sections are kept."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(README, text)


def matmul_gflops(n: int = 2048, reps: int = 5, dtype: torch.dtype | None = None) -> float:
    """Median GEMM rate in GFLOP/s of this process (all intra-op threads) in ``dtype`` (default float32)."""
    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)
