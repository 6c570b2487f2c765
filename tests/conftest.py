"""Fixtures: an embedded AWS (moto's server on loopback) and models published through the CLI's code."""

from __future__ import annotations

import os

# Before anything imports boto3 or Powertools: fake credentials, no X-Ray, a fixed region.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "lambda-personalize-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "LambdaPersonalizeTests",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from lambda_personalize.local_api import LocalApiServer  # noqa: E402
from lambda_personalize.publish import prepare_version, put_campaign, upload_version  # noqa: E402
from personalize_core.artifacts import Recipe  # noqa: E402
from personalize_core.settings import get_settings  # noqa: E402
from personalize_core.store import get_store  # noqa: E402
from tests.utils import ACCOUNT, REGION, ROOT, load_function, random_model  # noqa: E402

#: The campaigns that events/*.json name; the session publishes them.
EVENT_CAMPAIGNS = {
    "demo-user-personalization": Recipe.USER_PERSONALIZATION,
    "demo-related-items": Recipe.RELATED_ITEMS,
    "demo-popular-items": Recipe.POPULAR_ITEMS,
    "demo-personalized-ranking": Recipe.PERSONALIZED_RANKING,
}


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # The serving code uses boto3's defaults; these service endpoints send it to the embedded AWS.
    for service in ("S3", "STS", "DYNAMODB", "SQS"):
        os.environ[f"AWS_ENDPOINT_URL_{service}"] = url
    yield url
    server.stop()


@pytest.fixture(scope="session")
def s3(moto_url: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_url, region_name=REGION)


def new_bucket(s3: Any) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3: Any) -> str:
    return new_bucket(s3)


def publish(
    s3: Any,
    bucket: str,
    solution: str,
    recipe: Recipe,
    model: dict[str, Any],
    campaign: str | None = None,
    version: str | None = None,
) -> str:
    """Publish through the CLI's own code path; returns the solution version ARN."""
    prepared = prepare_version(
        solution=solution,
        recipe=recipe,
        region=REGION,
        account=ACCOUNT,
        item_ids=model["item_ids"],
        item_factors=model.get("item_factors"),
        user_ids=model.get("user_ids", ()),
        user_factors=model.get("user_factors"),
        popularity=model.get("popularity"),
        version=version,
    )
    manifest = upload_version(s3, bucket, prepared)
    if campaign:
        put_campaign(s3, bucket, campaign, manifest)
    return manifest.solution_version_arn


@pytest.fixture(scope="session")
def serving_bucket(s3: Any) -> str:
    """A bucket holding the demo campaigns that events/ names, as the serving functions' MODEL_BUCKET."""
    bucket = new_bucket(s3)
    model = random_model(num_items=300, num_users=50, dims=16, seed=7)
    for campaign, recipe in EVENT_CAMPAIGNS.items():
        publish(s3, bucket, campaign, recipe, model, campaign=campaign)
    return bucket


@pytest.fixture
def serving_env(serving_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The environment template.yaml gives the serving functions, with a fresh (cold) store."""
    monkeypatch.setenv("MODEL_BUCKET", serving_bucket)
    monkeypatch.setenv("CAMPAIGN_CACHE_TTL_SECONDS", "0.2")
    get_settings.cache_clear()
    get_store.cache_clear()
    yield serving_bucket
    get_settings.cache_clear()
    get_store.cache_clear()


@pytest.fixture
def runtime_url(serving_env: str) -> Iterator[str]:
    """The runtime routes of template.yaml on real HTTP (loopback), calling the real handlers."""
    routes = {
        ("POST", "/recommendations"): (
            "GetRecommendationsFunction",
            load_function("get_recommendations").lambda_handler,
        ),
        ("POST", "/personalize-ranking"): (
            "GetPersonalizedRankingFunction",
            load_function("get_personalized_ranking").lambda_handler,
        ),
    }
    server = LocalApiServer(routes).start()
    yield server.url
    server.stop()


@pytest.fixture
def runtime(runtime_url: str) -> Any:
    """An unchanged boto3 personalize-runtime client pointed at the local API."""
    return boto3.client(
        "personalize-runtime",
        endpoint_url=runtime_url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


@dataclass(frozen=True)
class LocalStack:
    """A running `lambda-personalize run` (the process `make run` starts) and what it printed."""

    api_url: str
    banner: list[str]
    data_dir: Path

    @property
    def printed_commands(self) -> list[str]:
        return [line.split("$ ", 1)[1] for line in self.banner if line.lstrip().startswith("$ ")]


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local runtime as a subprocess on free ports, with a small demo catalog."""
    data_dir = tmp_path_factory.mktemp("local-stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    command = [
        str(Path(sys.executable).parent / "lambda-personalize"),
        "run",
        "--port=0",
        "--aws-port=0",
        f"--data-dir={data_dir}",
        "--demo-items=800",
        "--demo-users=400",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + 120
    for line in process.stdout:  # the runtime prints its banner once everything is up
        banner.append(line.rstrip("\n"))
        if "Press Ctrl-C to stop." in line or time.monotonic() > deadline:
            break
    output = "\n".join(banner)
    match = re.search(r"API \(every route of the template\):\s+(http://\S+)", output)
    if match is None:
        process.kill()
        pytest.fail(f"the local runtime did not start:\n{output}")
    # Keep reading its output so that a chatty runtime never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    yield LocalStack(match.group(1), banner, data_dir)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
