"""The local runtime (`lambda-personalize run`, a real process on loopback) under concurrent load.

- a bounded load (benchmarks/local_load.py's own loop, CI-sized): zero failed requests;
- a campaign switched back and forth while clients hammer it: zero failed requests, and every
  answer is exactly one version's answer (the version header, and the item list that version gives).

`make load` runs the full-size load (benchmarks/local_load.py); these assert errors, never timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import numpy as np
import pytest
from benchmarks.local_load import run_load, start_runtime
from botocore.config import Config

from personalize_core.modelstore.layout import Recipe
from tests.conftest import LocalStack, publish
from tests.utils import REGION, campaign_arn, random_model, softmax_reference

LOAD_REQUESTS = int(os.environ.get("LOAD_REQUESTS", "600"))
LOAD_CLIENTS = int(os.environ.get("LOAD_CLIENTS", "8"))
SWITCHES = 4
CLIENTS = 8
VERSION_HEADER = "x-personalize-solution-version-arn"
FAKE = {"aws_access_key_id": "local", "aws_secret_access_key": "local", "region_name": REGION}


def test_a_bounded_load_on_the_local_runtime_has_no_errors(local_stack: LocalStack) -> None:
    # When many concurrent clients send a fixed number of requests (no new one after 120 s)
    result = run_load(
        local_stack.api_url, LOAD_REQUESTS, LOAD_CLIENTS, users=400, num_results=25, duration=120
    )
    # Then every request was sent and answered in full
    assert result.errors == []
    assert result.requests == LOAD_REQUESTS


@pytest.fixture(scope="module")
def switching_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A local runtime whose functions re-read campaign pointers every 0.2 s (the template's
    CampaignCacheTtlSeconds parameter), without the demo model."""
    runtime = start_runtime(
        tmp_path_factory.mktemp("switching"),
        ["--no-demo", "--parameter-overrides", "CampaignCacheTtlSeconds=0.2"],
    )
    yield runtime
    runtime.stop()


def test_switching_a_campaign_under_load_fails_nothing_and_mixes_no_versions(
    switching_stack: LocalStack,
) -> None:
    """Every answer is checked against its user's expected list: this also catches a runtime that
    lets concurrent requests see each other's event (the local API once did)."""
    # Given two versions of a solution whose answers differ for every user, a campaign on A
    s3 = boto3.client("s3", endpoint_url=switching_stack.aws_url, **FAKE)
    bucket = switching_stack.model_bucket
    model_a = random_model(num_items=400, num_users=30, dims=8, seed=21)
    model_b = {**model_a, "item_factors": -model_a["item_factors"]}
    version_a = publish(s3, bucket, "switch", Recipe.USER_PERSONALIZATION, model_a, campaign="switch")
    version_b = publish(s3, bucket, "switch", Recipe.USER_PERSONALIZATION, model_b)
    expected = {
        (version, f"user-{u}"): [
            f"item-{i}" for i in np.argsort(-softmax_reference(m["item_factors"], m["user_factors"][u]))[:10]
        ]
        for version, m in ((version_a, model_a), (version_b, model_b))
        for u in range(30)
    }
    campaign = campaign_arn("switch")
    stop = threading.Event()
    answers: list[str] = []
    failures: list[str] = []

    def hammer(client_index: int) -> None:
        runtime = boto3.client(
            "personalize-runtime",
            endpoint_url=switching_stack.api_url,
            config=Config(retries={"max_attempts": 1}),
            **FAKE,
        )
        n = 0
        while not stop.is_set():
            user = f"user-{(client_index * 7 + n) % 30}"
            n += 1
            try:
                answer = runtime.get_recommendations(campaignArn=campaign, userId=user, numResults=10)
            except Exception as exc:
                failures.append(f"{user}: {type(exc).__name__}: {exc}")
                continue
            version = answer["ResponseMetadata"]["HTTPHeaders"][VERSION_HEADER]
            items = [item["itemId"] for item in answer["itemList"]]
            if items != expected.get((version, user)):
                failures.append(f"{user}: {version} answered {items}")
            answers.append(version)

    control_plane = boto3.client(
        "personalize",
        endpoint_url=switching_stack.api_url,
        config=Config(retries={"max_attempts": 1}),
        **FAKE,
    )

    def switch(index: int, version: str) -> None:
        """Odd switches through the management API, even ones through the publish CLI."""
        if index % 2:
            control_plane.update_campaign(campaignArn=campaign, solutionVersionArn=version)
            return
        cli = Path(sys.executable).parent / "lambda-personalize"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        env |= {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
        where = ["--endpoint-url", switching_stack.aws_url, "--region", REGION, "--bucket", bucket]
        subprocess.run(
            [cli, "campaign", *where, "--name", "switch", "--solution-version-arn", version],
            check=True,
            env=env,
            capture_output=True,
        )

    # When clients hammer the campaign while it is switched B, A, B, A, ... each switch waited for
    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(hammer, c) for c in range(CLIENTS)]
        observed = []
        try:
            for index in range(SWITCHES):
                target = version_b if index % 2 == 0 else version_a
                switch(index, target)
                seen_from = len(answers)
                deadline = time.monotonic() + 20
                while target not in answers[seen_from:] and time.monotonic() < deadline:
                    time.sleep(0.05)
                observed.append(target in answers[seen_from:])
                time.sleep(0.3)  # some load on the new version before the next switch
        finally:
            stop.set()
            for future in running:
                future.result()

    # Then every switch took effect, not one request failed, and each answer was one version's
    assert observed == [True] * SWITCHES
    assert failures == []
    assert answers.count(version_a) > 0
    assert answers.count(version_b) > 0
    assert len(answers) > 100
