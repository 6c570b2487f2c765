"""A big batch job, streamed: every line answered once, in order, poison lines as error lines, and
the worker's memory does not grow with the input.

The worker runs in its own process (tests/batch_worker_process.py) so that its peak RSS is its
own (the embedded AWS, which holds the data, lives in the test process). CI runs 100,000 lines
with long user ids (~23 MB of input); `make load` runs a million lines:

    BATCH_SCALE_LINES=1000000 BATCH_SCALE_ID_PAD=0 .venv/bin/pytest tests/integration/test_batch_scale.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from personalize_core.modelstore.layout import Recipe
from tests.batch_worker_process import PROBE
from tests.conftest import BatchEnv, publish
from tests.integration.test_batch_jobs import ROLE
from tests.utils import ROOT

LINES = int(os.environ.get("BATCH_SCALE_LINES", "100000"))
ID_PAD = int(os.environ.get("BATCH_SCALE_ID_PAD", "200"))
USERS = 1000
ITEMS = 20
POISON_EVERY = 9973
SHARD_BYTES = 256 * 1024  # the template's default


def user_id(u: int) -> str:
    return f"user-{u:04d}-" + "p" * ID_PAD


def job_input(lines: int) -> bytes:
    rows = [
        b"not json at all"
        if i % POISON_EVERY == POISON_EVERY - 1
        else b'{"userId": "%s"}' % user_id(i % USERS).encode()
        for i in range(lines)
    ]
    return b"\n".join(rows) + b"\n"


def probe(worker: subprocess.Popen[str]) -> dict[str, Any]:
    """The next report of the worker process (its logs, on the same stdout, are skipped)."""
    assert worker.stdout is not None
    for line in worker.stdout:
        if line.startswith(PROBE):
            report: dict[str, Any] = json.loads(line[len(PROBE) :])
            return report
    raise AssertionError(f"the worker process ended without a report (exit {worker.wait()})")


def create_job(control_plane: Any, name: str, version: str, bucket: str, key: str) -> str:
    return str(
        control_plane.create_batch_inference_job(
            jobName=name,
            solutionVersionArn=version,
            numResults=1,
            jobInput={"s3DataSource": {"path": f"s3://{bucket}/{key}"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/out-{name}/"}},
            roleArn=ROLE,
        )["batchInferenceJobArn"]
    )


@pytest.mark.slow
def test_a_big_job_streams_in_bounded_memory_and_answers_every_line_in_order(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str, moto_url: str
) -> None:
    # Given a tiny model, and an input of LINES lines with a poison line every POISON_EVERY
    rng = np.random.default_rng(5)
    model = {
        "item_ids": [f"item-{i}" for i in range(ITEMS)],
        "user_ids": [user_id(u) for u in range(USERS)],
        "item_factors": rng.normal(0, 1, (ITEMS, 4)).astype(np.float32),
        "user_factors": rng.normal(0, 1, (USERS, 4)).astype(np.float32),
    }
    version = publish(s3, serving_bucket, "scale", Recipe.USER_PERSONALIZATION, model)
    bucket = batch_env.data_bucket
    body = job_input(LINES)
    s3.put_object(Bucket=bucket, Key="big.jsonl", Body=body)
    # The warm-up answers full 1024-line chunks too, so the kernel's threads and buffers exist before
    s3.put_object(Bucket=bucket, Key="warm.jsonl", Body=job_input(3000))
    # A worker that takes long on the finisher must not see its message come back meanwhile
    batch_env.poller.sqs.set_queue_attributes(
        QueueUrl=batch_env.queue_url, Attributes={"VisibilityTimeout": "900"}
    )
    warm = create_job(control_plane, "warm-up", version, bucket, "warm.jsonl")

    # When a worker process runs a warm-up job, then the big one
    env = {
        **os.environ,
        **{f"AWS_ENDPOINT_URL_{s}": moto_url for s in ("S3", "STS", "DYNAMODB", "SQS")},
        "BATCH_SHARD_BYTES": str(SHARD_BYTES),
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.batch_worker_process"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None
    assert worker.stdout is not None
    try:
        warm_rss = probe(worker)["rss"]
        arn = create_job(control_plane, "big", version, bucket, "big.jsonl")
        worker.stdin.write("go\n")
        worker.stdin.flush()
        measured = probe(worker)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    # Then both jobs are ACTIVE
    for job in (warm, arn):
        assert (
            control_plane.describe_batch_inference_job(batchInferenceJobArn=job)["batchInferenceJob"][
                "status"
            ]
            == "ACTIVE"
        )
    # And the worker's peak memory grew by far less than the input's size, and by a bound that does
    # not depend on it (it streams: a 1 MiB spool of the .out, 1024 lines at a time, one part in hand)
    growth = measured["peak_rss"] - warm_rss
    print(f"{LINES} lines, {len(body) / 2**20:.1f} MiB in: worker peak RSS +{growth / 2**20:.1f} MiB")
    assert growth < 8 * 2**20, growth
    assert growth < len(body) / 3, (growth, len(body))
    # And the output has one line per input line, in order: error lines for the poison, and for
    # every other line the item the model ranks first for that user
    out = s3.get_object(Bucket=bucket, Key="out-big/big.jsonl.out")["Body"].read().splitlines()
    assert len(out) == LINES
    best = np.argmax(model["user_factors"] @ model["item_factors"].T, axis=1)
    for i, raw in enumerate(out):
        line = json.loads(raw)
        if i % POISON_EVERY == POISON_EVERY - 1:
            assert line == {
                "input": "not json at all",
                "output": {"recommendedItems": [], "scores": []},
                "error": "The line is not valid JSON",
            }
        else:
            assert line["input"] == {"userId": user_id(i % USERS)}, i
            assert line["output"]["recommendedItems"] == [f"item-{best[i % USERS]}"], i
