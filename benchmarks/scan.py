"""The scorer alone, against the float32 paths it replaces, in turns in one process.

    .venv/bin/python -m benchmarks.scan --items 1000000 --dims 64

One thread. For each of ``--rounds`` rounds, in this order, each timed once:
- read f32: one read pass over the float32 matrix (``max``): the float32 floor;
- read high: one read pass over the high plane alone (2 bytes a value): the scan's floor;
- sgemv: numpy's matrix-vector product on the Fortran-order float32 matrix (what the warm path
  ran before the planes, and what faiss's search does first);
- top_k: the compiled ``pl_top_k`` (the high-half scan, the selection, the float64 re-rank);
- user_top_k: scoring.user_top_k with a stored normaliser (top_k plus its Python around it).
Taking turns, all of them meet the same disturbances on a shared machine; the p50 ratios to
"read f32" are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.serving import native
from personalize_core.serving.scoring import high_scan_error_bound, log_normalisers, max_row_norm, user_top_k


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    kernels = native.kernels()
    if kernels is None:
        raise SystemExit("the kernels are not built: make native")
    rng = np.random.default_rng(0)
    scale = np.float32(2 / np.sqrt(args.dims))
    matrix = rng.normal(0, 1, (args.items, args.dims)).astype(np.float32) * scale
    users = rng.normal(0, 1, (args.rounds, args.dims)).astype(np.float32) * scale
    items = ItemMatrix.from_matrix(matrix)
    fortran = np.asfortranarray(matrix)
    high = items.high
    largest = max_row_norm(items)
    normalisers = log_normalisers(matrix, users) if args.items <= 200_000 else np.zeros(args.rounds)
    out = np.empty(args.items, dtype=np.float32)
    times: dict[str, list[float]] = {}

    def timed(name: str, run: Callable[[], object]) -> None:
        began = time.perf_counter()
        run()
        times.setdefault(name, []).append(time.perf_counter() - began)

    with threadpool_limits(1):
        for user, normaliser in zip(users, normalisers, strict=True):
            slack = 2 * high_scan_error_bound(args.dims, float(np.linalg.norm(user)), largest)
            timed("read f32", fortran.max)
            timed("read high", high.max)
            timed("sgemv", lambda: np.matmul(fortran, user, out=out))
            timed("top_k", lambda: kernels.top_k(items, user, 25, slack, False))
            timed(
                "user_top_k",
                lambda: user_top_k(items, user, 25, log_normaliser=float(normaliser), max_norm=largest),
            )
    reference = statistics.median(times["read f32"])
    print(f"{args.items:,} x {args.dims}, 1 thread, {args.rounds} rounds, loop {kernels.name}")
    for name, samples in times.items():
        p50 = statistics.median(samples)
        print(
            f"{name:<11} min {min(samples) * 1e3:7.3f} ms  p50 {p50 * 1e3:7.3f} ms  "
            f"p50 / read f32 {p50 / reference:.2f}"
        )


if __name__ == "__main__":
    main()
