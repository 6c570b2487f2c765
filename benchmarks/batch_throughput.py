"""Batch inference throughput: users scored per second, top-k over a catalog, and shard scaling.

    .venv/bin/python -m benchmarks.batch_throughput --items 100000 --dims 64 --k 25

Every process uses one BLAS thread, as one Lambda vCPU (1769 MB) does. Prints, in one process:
- the reference: a plain per-user loop of ``user_top_k`` (what the real-time path does per request);
- ``batch_user_top_k`` (blocked matrix products) on the same users, and the ratio;
- the worker's whole shard path in memory (parse JSON lines, score, serialise the output lines);
then shards scored by parallel worker processes (one per shard, at most one per core here; on
Lambda every shard is its own invocation, so throughput grows with concurrency until S3/SQS bind).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS; spawned workers inherit it
# ruff: noqa: E402

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from personalize_core.batch.inference import answer_lines, parse_line
from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.modelstore.layout import Manifest, Recipe
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.modelstore.users import LoadedUsers
from personalize_core.serving.batch_scoring import batch_user_top_k
from personalize_core.serving.scoring import log_normalisers, max_row_norm, user_top_k


def catalog(items: int, users: int, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0, 0.3, (items, dims)).astype(np.float32),
        rng.normal(0, 0.3, (users, dims)).astype(np.float32),
    )


def model_of(
    item_factors: np.ndarray, user_factors: np.ndarray, normalisers: np.ndarray
) -> SolutionVersionModel:
    items, users = len(item_factors), len(user_factors)
    manifest = Manifest(
        "arn:aws:personalize:us-east-1:1:solution/b/v",
        "b",
        "v",
        Recipe.USER_PERSONALIZATION,
        items,
        users,
        item_factors.shape[1],
        0.0,
        {},
    )
    item_ids = [f"item-{i}" for i in range(items)]
    popularity = np.zeros(items, dtype=np.float32)
    return SolutionVersionModel(
        manifest=manifest,
        item_ids=item_ids,
        item_index={item: i for i, item in enumerate(item_ids)},
        item_factors=ItemMatrix.from_matrix(item_factors),  # the layout a loaded version serves
        item_max_norm=max_row_norm(item_factors),
        # the users in memory with their normalisers (a warm worker with its users fetched)
        users=LoadedUsers({f"user-{u}": u for u in range(users)}, user_factors, normalisers),
        popularity=popularity,
        popular_order=np.arange(items),
        item_norms=None,
    )


_SHARD: dict[str, Any] = {}


def _prepare_shard_process(items: int, users: int, dims: int) -> None:
    """Each worker process builds its catalog and the users' normalisers once, untimed (as a
    published version carries them and a warm worker has the model loaded)."""
    item_factors, user_factors = catalog(items, users, dims, seed=1)
    served = ItemMatrix.from_matrix(item_factors)
    norms = log_normalisers(item_factors, user_factors)
    _SHARD.update(items=served, users=user_factors, norms=norms, largest=max_row_norm(served))


def _shard(k: int) -> float:
    """Score one shard in a worker process; returns its own wall time."""
    started = time.perf_counter()
    batch_user_top_k(
        _SHARD["items"], _SHARD["users"], k, log_normalisers=_SHARD["norms"], max_norm=_SHARD["largest"]
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--users", type=int, default=8_000, help="users for the batched kernel")
    parser.add_argument("--loop-users", type=int, default=400, help="users for the per-user reference loop")
    parser.add_argument("--shard-users", type=int, default=4_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    item_factors, user_factors = catalog(args.items, args.users, args.dims)
    served = ItemMatrix.from_matrix(item_factors)  # the layout a loaded version serves
    largest = max_row_norm(served)
    print(
        f"catalog {args.items} x {args.dims} float32, top-{args.k}, 1 BLAS thread a process, "
        f"{os.cpu_count()} cores"
    )

    # As a published version: every user's softmax normaliser computed at publish time.
    normalisers = log_normalisers(item_factors, user_factors)
    user_top_k(served, user_factors[0], args.k, log_normaliser=float(normalisers[0]), max_norm=largest)
    started = time.perf_counter()
    for u in range(args.loop_users):
        user_top_k(served, user_factors[u], args.k, log_normaliser=float(normalisers[u]), max_norm=largest)
    loop_rate = args.loop_users / (time.perf_counter() - started)
    print(f"reference  per-user loop of user_top_k      {loop_rate:10.0f} users/s")

    started = time.perf_counter()
    batch_user_top_k(served, user_factors, args.k, log_normalisers=normalisers, max_norm=largest)
    batch_rate = args.users / (time.perf_counter() - started)
    print(
        f"batched    batch_user_top_k                 {batch_rate:10.0f} users/s   "
        f"x{batch_rate / loop_rate:.2f}"
    )

    model = model_of(item_factors, user_factors, normalisers)
    raw = [json.dumps({"userId": f"user-{u}"}).encode() for u in range(args.users)]
    started = time.perf_counter()
    lines = [parse_line(line, Recipe.USER_PERSONALIZATION) for line in raw]
    answer_lines(model, lines, args.k)
    body = b"".join(line.to_json() + b"\n" for line in lines)
    shard_rate = args.users / (time.perf_counter() - started)
    print(
        f"worker     parse + score + write lines      {shard_rate:10.0f} users/s   "
        f"x{shard_rate / loop_rate:.2f}"
        f"   ({len(body) / args.users:.0f} output bytes a user)"
    )

    spawn = get_context("spawn")
    for shards in args.shards:
        processes = min(shards, os.cpu_count() or 1)
        jobs = [args.k] * shards
        setup = (args.items, args.shard_users, args.dims)
        with ProcessPoolExecutor(
            max_workers=processes, mp_context=spawn, initializer=_prepare_shard_process, initargs=setup
        ) as pool:
            list(pool.map(_shard, jobs[:processes]))  # start the processes, build their catalogs first
            started = time.perf_counter()
            per_shard = list(pool.map(_shard, jobs))
            elapsed = time.perf_counter() - started
        total = shards * args.shard_users
        print(
            f"shards {shards:3d} ({processes} parallel)   {total / elapsed:10.0f} users/s overall, "
            f"{args.shard_users / float(np.mean(per_shard)):8.0f} users/s per shard "
            f"(x{total / elapsed / batch_rate:.2f} the single process)"
        )


if __name__ == "__main__":
    main()
