"""What a filter costs: warm GetRecommendations through the real handler, with and without one.

    .venv/bin/python -m benchmarks.filter_cost --items 100000 --dims 64

Publishes a random USER_PERSONALIZATION model with item metadata (GENRE, 20 values, some items
with two; PRICE) and recent interactions into an embedded AWS (moto on loopback), creates the
filters through the management API's code, then times API Gateway events through
``lambda_handler``, the runs interleaved in the same process:
- no filter;
- a two-condition filter ``Items.GENRE IN ($GENRE) AND Items.PRICE < 50`` (one parameter per request);
- the same chained with ``| EXCLUDE ... Interactions.EVENT_TYPE IN ("*")`` (the user's history).
"""

from __future__ import annotations

import benchmarks.environment  # noqa: F401 - first: boto3 and Powertools read it on import

# isort: split
import argparse
import json
import os
import statistics
import time
from typing import Any

import boto3
import numpy as np
from moto.server import ThreadedMotoServer
from tests.utils import invoke

from lambda_personalize.local_api import proxy_event
from personalize_core.control.filters import create_filter
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import prepare_extras, prepare_version, put_campaign, upload_version

GROUP = "arn:aws:personalize:us-east-1:123456789012:dataset-group/bench"
CAMPAIGN = "arn:aws:personalize:us-east-1:123456789012:campaign/bench"


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
    item_ids = [f"i{i}" for i in range(args.items)]
    genres = [f"g{g}" for g in range(20)]
    first, second = rng.integers(0, 20, args.items), rng.integers(0, 20, args.items)
    two = rng.random(args.items) < 0.3
    genre_column = [
        f"{genres[a]}|{genres[b]}" if t and a != b else genres[a]
        for a, b, t in zip(first.tolist(), second.tolist(), two.tolist(), strict=True)
    ]
    price_column = [f"{p:.2f}" for p in rng.uniform(1, 200, args.items)]
    events = [
        (f"u{u}", f"i{i}", float(t), "click")
        for u in range(args.users)
        for t, i in enumerate(rng.integers(0, args.items, 50).tolist())
    ]
    items = rng.normal(0, 0.3, (args.items, args.dims)).astype(np.float32)
    users = rng.normal(0, 0.3, (args.users, args.dims)).astype(np.float32)
    prepared = prepare_version(
        solution="bench",
        recipe=Recipe.USER_PERSONALIZATION,
        region="us-east-1",
        account="123456789012",
        item_ids=item_ids,
        item_factors=items,
        user_ids=[f"u{u}" for u in range(args.users)],
        user_factors=users,
        extra_files=prepare_extras(
            item_ids, args.dims, items={"GENRE": genre_column, "PRICE": price_column}, interactions=events
        ),
    )
    put_campaign(ModelBucket(s3, "bench"), "bench", upload_version(ModelBucket(s3, "bench"), prepared))
    bucket = ModelBucket(s3, "bench")
    two_conditions = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) AND Items.PRICE < 50"
    chained = two_conditions + ' | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'
    filters = {}
    for name, expression in (("two", two_conditions), ("chained", chained)):
        body = {"name": name, "datasetGroupArn": GROUP, "filterExpression": expression}
        filters[name] = create_filter(bucket, body)["filterArn"]

    def event(user: int, filter_name: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"campaignArn": CAMPAIGN, "userId": f"u{user}", "numResults": 25}
        if filter_name:
            body |= {"filterArn": filters[filter_name], "filterValues": {"GENRE": f'"{genres[user % 20]}"'}}
        return proxy_event(
            "POST", "/recommendations", {"Content-Type": "application/json"}, json.dumps(body).encode()
        )

    for name in (None, "two", "chained"):  # load the model, read the filters
        assert invoke("get_recommendations", event(0, name))["statusCode"] == 200

    runs: dict[str | None, list[float]] = {None: [], "two": [], "chained": []}
    for user in rng.integers(0, args.users, args.requests).tolist():
        for name, samples in runs.items():
            e = event(user, name)
            started = time.perf_counter()
            result = invoke("get_recommendations", e)
            samples.append(time.perf_counter() - started)
            assert result["statusCode"] == 200, result["body"]
            assert len(json.loads(result["body"])["itemList"]) == 25

    base = statistics.median(runs[None])
    print(
        f"catalog {args.items} x {args.dims} float32, {args.requests} warm requests each, top-25, interleaved"
    )
    print(f"{'':44}{'p50 ms':>10}{'p99 ms':>10}{'ratio p50':>11}")
    for label, name in (
        ("no filter", None),
        ("two conditions (GENRE IN $GENRE AND PRICE<50)", "two"),
        ("  | EXCLUDE Interactions.EVENT_TYPE IN *", "chained"),
    ):
        ordered = sorted(runs[name])
        p50, p99 = statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"{label:44}{p50 * 1000:>10.2f}{p99 * 1000:>10.2f}{p50 / base:>11.2f}")
    server.stop()


if __name__ == "__main__":
    main()
