"""Warm GetRecommendations through the real handler, against plain numpy in the same process.

    .venv/bin/python -m benchmarks.warm_handler --items 100000 --dims 64

Starts an embedded AWS (moto) on loopback, publishes a random USER_PERSONALIZATION model
through the CLI's code, then times API Gateway events through ``lambda_handler`` (warm, after
one request has loaded the model) and, as the reference, ``X @ u`` + a full argsort.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

os.environ.update(
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_DISABLED="true",
    POWERTOOLS_SERVICE_NAME="bench",
    POWERTOOLS_METRICS_NAMESPACE="bench",
    POWERTOOLS_LOG_LEVEL="WARNING",
)

import boto3
import numpy as np
from moto.server import ThreadedMotoServer
from tests.utils import invoke

from lambda_personalize.local_api import proxy_event
from lambda_personalize.publish import prepare_version, put_campaign, upload_version
from personalize_core.artifacts import Recipe


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL_S3"] = f"http://{host}:{port}"
    s3: Any = boto3.client("s3")
    s3.create_bucket(Bucket="bench")
    os.environ["MODEL_BUCKET"] = "bench"

    rng = np.random.default_rng(0)
    items = rng.normal(0, 0.3, (args.items, args.dims)).astype(np.float32)
    users = rng.normal(0, 0.3, (args.users, args.dims)).astype(np.float32)
    prepared = prepare_version(
        solution="bench",
        recipe=Recipe.USER_PERSONALIZATION,
        region="us-east-1",
        account="123456789012",
        item_ids=[f"i{i}" for i in range(args.items)],
        item_factors=items,
        user_ids=[f"u{u}" for u in range(args.users)],
        user_factors=users,
    )
    put_campaign(s3, "bench", "bench", upload_version(s3, "bench", prepared))
    arn = "arn:aws:personalize:us-east-1:123456789012:campaign/bench"

    def event(user: int) -> dict[str, Any]:
        body = json.dumps({"campaignArn": arn, "userId": f"u{user}", "numResults": 25}).encode()
        return proxy_event("POST", "/recommendations", {"Content-Type": "application/json"}, body)

    started = time.perf_counter()
    assert invoke("get_recommendations", event(0))["statusCode"] == 200
    first = time.perf_counter() - started

    events = [event(int(u)) for u in rng.integers(0, args.users, args.requests)]
    ours = []
    for e in events:
        t = time.perf_counter()
        invoke("get_recommendations", e)
        ours.append(time.perf_counter() - t)
    naive = []
    for u in rng.integers(0, args.users, args.requests):
        t = time.perf_counter()
        np.argsort(-(items @ users[u]))[:25]
        naive.append(time.perf_counter() - t)

    (o50, o99), (n50, n99) = percentiles(ours), percentiles(naive)
    print(f"catalog {args.items} x {args.dims} float32, {args.requests} warm requests, top-25 with scores")
    print(f"first request (loads the model from S3): {first * 1000:.1f} ms")
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'handler (warm)':24}{o50 * 1000:>10.2f}{o99 * 1000:>10.2f}")
    print(f"{'naive numpy (X@u+sort)':24}{n50 * 1000:>10.2f}{n99 * 1000:>10.2f}")
    print(f"ratio handler/naive p50: {o50 / n50:.2f}")
    server.stop()


if __name__ == "__main__":
    main()
