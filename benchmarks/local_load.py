"""GetRecommendations under a bounded concurrent load on the local runtime, over loopback.

Starts `lambda-personalize run` (the process `make run` starts) on free ports with the default demo
catalog, unless --url names a running one; then sends a fixed number of requests from a few
concurrent clients (each an unchanged boto3 personalize-runtime client, users drawn at random) and
prints the request rate and p50/p99 latency. The reference is the same load from one client, in
the same process, so the printout says what concurrency buys on this machine.

The load is bounded twice: a fixed request count, and --duration seconds after which no new request
starts. Every failed request (an exception, or an answer without items) is counted; the exit status
is 1 when there was any, so `make load` fails on a single error.

    .venv/bin/python -m benchmarks.local_load --requests 2000 --clients 4
    make load    # 20,000 requests from 16 clients, at most 180 s
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
from botocore.config import Config

from lambda_personalize.local_process import LocalStack, LocalStackError, start_local_stack

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "arn:aws:personalize:us-east-1:123456789012:campaign/demo-user-personalization"


def start_runtime(data_dir: Path, extra_args: Sequence[str] = ()) -> LocalStack:
    """`lambda-personalize run` on free ports, once it has printed its banner."""
    try:
        return start_local_stack(data_dir, extra_args)
    except LocalStackError as exc:
        raise SystemExit(str(exc)) from None


@dataclass(frozen=True)
class LoadResult:
    seconds: float
    #: Milliseconds, one per request that was sent (failed ones included).
    latencies: np.ndarray
    errors: list[str]

    @property
    def requests(self) -> int:
        return len(self.latencies)


def run_load(
    url: str,
    requests: int,
    clients: int,
    users: int,
    num_results: int,
    duration: float = float("inf"),
    campaign: str = CAMPAIGN,
) -> LoadResult:
    """`requests` calls spread over `clients` threads; none starts after `duration` seconds."""
    local = threading.local()
    rng = random.Random(7)
    user_ids = [f"user-{rng.randrange(users)}" for _ in range(requests)]
    errors: list[str] = []
    deadline = time.perf_counter() + duration

    def client() -> object:
        if not hasattr(local, "client"):
            local.client = boto3.client(
                "personalize-runtime",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="local",
                aws_secret_access_key="local",
                config=Config(retries={"max_attempts": 1}, max_pool_connections=clients),
            )
        return local.client

    def call(user: str) -> float | None:
        if time.perf_counter() > deadline:
            return None
        runtime = client()
        started = time.perf_counter()
        try:
            answer = runtime.get_recommendations(  # type: ignore[attr-defined]
                campaignArn=campaign, userId=user, numResults=num_results
            )
            if len(answer["itemList"]) != num_results:
                errors.append(f"{user}: {len(answer['itemList'])} items")
        except Exception as exc:  # every failure counts, whatever it is
            errors.append(f"{user}: {type(exc).__name__}: {exc}")
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(call, user_ids[: clients * 5]))  # warm: connections, clients, the loaded model
        errors.clear()
        started = time.perf_counter()
        deadline = started + duration
        latencies = np.array([ms for ms in pool.map(call, user_ids) if ms is not None])
    return LoadResult(time.perf_counter() - started, latencies, errors)


def report(label: str, result: LoadResult) -> float:
    rate = result.requests / result.seconds
    p50, p99 = np.percentile(result.latencies, [50, 99])
    print(
        f"{label:<22} {result.requests:>6} requests in {result.seconds:6.2f} s  {rate:8.1f} req/s  "
        f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  errors {len(result.errors)}"
    )
    for error in result.errors[:5]:
        print(f"  error: {error}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running local runtime (default: start one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=120.0, help="no request starts after this (s)")
    parser.add_argument("--users", type=int, default=3000, help="demo users to draw from")
    parser.add_argument("--num-results", type=int, default=25)
    args = parser.parse_args()

    runtime = None
    with tempfile.TemporaryDirectory() as data_dir:
        if args.url:
            url = args.url
        else:
            runtime = start_runtime(Path(data_dir))
            url = runtime.api_url
        try:
            print(
                f"GetRecommendations on {url}: demo catalog, "
                f"numResults={args.num_results}, {os.cpu_count()} CPUs"
            )
            single = run_load(url, args.requests // 4, 1, args.users, args.num_results, args.duration / 4)
            reference = report("1 client (reference)", single)
            loaded = run_load(url, args.requests, args.clients, args.users, args.num_results, args.duration)
            rate = report(f"{args.clients} clients", loaded)
            print(f"throughput ratio {args.clients} clients / 1 client: {rate / reference:.2f}x")
        finally:
            if runtime is not None:
                runtime.stop()
    if single.errors or loaded.errors:
        raise SystemExit(f"{len(single.errors) + len(loaded.errors)} requests failed")


if __name__ == "__main__":
    main()
