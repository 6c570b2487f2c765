"""GetRecommendations under a bounded concurrent load on the local runtime, over loopback.

Starts `lambda-personalize run` (the process `make run` starts) on free ports with the default demo
catalog, unless --url names a running one; then sends a fixed number of requests from a few
concurrent clients (each an unchanged boto3 personalize-runtime client, users drawn at random) and
prints the request rate and p50/p99 latency. The reference is the same load from one client, in
the same process, so the printout says what concurrency buys on this machine.

    .venv/bin/python -m benchmarks.local_load --requests 2000 --clients 4
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import numpy as np
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "arn:aws:personalize:us-east-1:123456789012:campaign/demo-user-personalization"


def start_runtime(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    command = [
        str(Path(sys.executable).parent / "lambda-personalize"),
        "run",
        "--port=0",
        "--aws-port=0",
        f"--data-dir={data_dir}",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    match = re.search(r"API \(every route of the template\):\s+(http://\S+)", "".join(lines))
    if match is None:
        process.kill()
        raise SystemExit("the local runtime did not start:\n" + "".join(lines))
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    return process, match.group(1)


def run_load(url: str, requests: int, clients: int, users: int, num_results: int) -> tuple[float, np.ndarray]:
    """(wall seconds, per-request latencies in ms) for `requests` calls spread over `clients` threads."""
    local = threading.local()
    rng = random.Random(7)
    user_ids = [f"user-{rng.randrange(users)}" for _ in range(requests)]

    def call(user: str) -> float:
        if not hasattr(local, "client"):
            local.client = boto3.client(
                "personalize-runtime",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="local",
                aws_secret_access_key="local",
                config=Config(retries={"max_attempts": 1}, max_pool_connections=clients),
            )
        started = time.perf_counter()
        local.client.get_recommendations(campaignArn=CAMPAIGN, userId=user, numResults=num_results)
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(call, user_ids[: clients * 5]))  # warm: connections, clients, the loaded model
        started = time.perf_counter()
        latencies = np.array(list(pool.map(call, user_ids)))
    return time.perf_counter() - started, latencies


def report(label: str, seconds: float, latencies: np.ndarray) -> float:
    rate = len(latencies) / seconds
    print(
        f"{label:<22} {len(latencies):>6} requests in {seconds:6.2f} s  {rate:8.1f} req/s  "
        f"p50 {np.percentile(latencies, 50):6.2f} ms  p99 {np.percentile(latencies, 99):6.2f} ms"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running local runtime (default: start one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--users", type=int, default=3000, help="demo users to draw from")
    parser.add_argument("--num-results", type=int, default=25)
    args = parser.parse_args()

    process = None
    with tempfile.TemporaryDirectory() as data_dir:
        if args.url:
            url = args.url
        else:
            process, url = start_runtime(Path(data_dir))
        try:
            print(
                f"GetRecommendations on {url}: demo catalog, "
                f"numResults={args.num_results}, {os.cpu_count()} CPUs"
            )
            reference = report(
                "1 client (reference)", *run_load(url, args.requests // 4, 1, args.users, args.num_results)
            )
            rate = report(
                f"{args.clients} clients",
                *run_load(url, args.requests, args.clients, args.users, args.num_results),
            )
            print(f"throughput ratio {args.clients} clients / 1 client: {rate / reference:.2f}x")
        finally:
            if process is not None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=15)


if __name__ == "__main__":
    main()
