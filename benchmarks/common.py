"""What the benchmarks share: timing and percentiles, the deployed function tree, the machine."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parent.parent


#: Powertools writes metrics (EMF) to stdout as Lambda wants; here they would drown the tables.
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - for the whole run


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def p50_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(run: Callable[[], object], repeats: int) -> list[float]:
    run()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        samples.append(time.perf_counter() - began)
    return samples


def deployed_tree(into: Path) -> Path:
    """The layer's package and the function as ``sam build`` ships them: byte-compiled with
    unchecked-hash .pyc, as layers/core/Makefile does (/opt and /var/task are read-only on Lambda,
    so what is not compiled there is compiled again on every cold start). Returns the app.py."""
    shutil.copytree(ROOT / "layers" / "core" / "personalize_core", into / "python" / "personalize_core")
    shutil.copytree(ROOT / "functions" / "get_recommendations", into / "task")
    for tree in (into / "python", into / "task"):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(tree)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return into / "task" / "app.py"


def load_seconds(output: str) -> float:
    """The store's own measure of the model's load, from its log line in the child's output."""
    for line in output.splitlines():
        if line.startswith("{") and '"solution version loaded"' in line:
            return float(json.loads(line)["seconds"])
    raise RuntimeError("the cold start logged no model load")


def machine() -> str:
    """CPU, cores, Python, numpy and BLAS (bench.py adds faiss's version)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info()]
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"BLAS: {', '.join(blas)}"
    )
