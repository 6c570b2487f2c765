"""What authorising a control-plane call against the caller's IAM policies adds (issue 16).

One process: moto's server as AWS (its IAM answering SimulatePrincipalPolicy through
lambda_personalize.local_iam), a small published campaign, and the real control-plane handler
invoked with API Gateway events for DescribeCampaign. Four ways, same calls:

- open:        ControlPlaneAccess=Open, no check (the reference);
- root:        IamPolicies, signed by the account's root (allowed without asking IAM);
- cached:      IamPolicies, an IAM user whose decision is in the authorizer's cache (warm function);
- simulated:   IamPolicies, the cache off: every call asks IAM's policy simulator.

Prints p50/p99 per way and the ratio to the reference. The simulated row's IAM is moto on
loopback; on AWS a cache miss costs one IAM API call instead (IAM's endpoint is global).

    .venv/bin/python -m benchmarks.authorization_cost --calls 300
"""

from __future__ import annotations

import argparse
import json
import os
import time

import boto3
import numpy as np

os.environ.update(
    {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
)
os.environ.update(
    {"AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}
)

from moto.server import ThreadedMotoServer
from tests.utils import clear_process_caches, load_function

from lambda_personalize.lambda_context import LocalLambdaContext
from lambda_personalize.local_api import proxy_event
from lambda_personalize.local_iam import install_policy_simulator, root_identity
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import prepare_version, put_campaign, upload_version

CAMPAIGN = "arn:aws:personalize:us-east-1:123456789012:campaign/bench"
READER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["personalize:Describe*", "personalize:List*"], "Resource": "*"}
    ],
}


def setup(url: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=url)
    s3.create_bucket(Bucket="bench-models")
    rng = np.random.default_rng(0)
    prepared = prepare_version(
        solution="bench",
        recipe=Recipe.POPULAR_ITEMS,
        region="us-east-1",
        account="123456789012",
        item_ids=[f"i{n}" for n in range(100)],
        popularity=rng.random(100),
    )
    put_campaign(
        ModelBucket(s3, "bench-models"), "bench", upload_version(ModelBucket(s3, "bench-models"), prepared)
    )
    iam = boto3.client("iam", endpoint_url=url)
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(READER))
    return {"userArn": "arn:aws:iam::123456789012:user/reader"}


def run(calls: int, identity: dict[str, str], environment: dict[str, str]) -> np.ndarray:
    os.environ.update(environment)
    clear_process_caches()
    handler = load_function("control_plane").lambda_handler
    headers = {"X-Amz-Target": "AmazonPersonalize.DescribeCampaign"}
    body = json.dumps({"campaignArn": CAMPAIGN}).encode()
    timings = []
    for n in range(calls + 20):
        event = proxy_event("POST", "/", headers, body, identity=identity)
        started = time.perf_counter()
        result = handler(event, LocalLambdaContext(function_name="ControlPlaneFunction"))
        elapsed = time.perf_counter() - started
        assert result["statusCode"] == 200, result["body"]
        if n >= 20:  # the first calls warm clients and caches
            timings.append(elapsed * 1000)
    return np.array(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    install_policy_simulator()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    for service in ("S3", "STS", "IAM", "DYNAMODB", "SQS"):
        os.environ[f"AWS_ENDPOINT_URL_{service}"] = url
    os.environ["MODEL_BUCKET"] = "bench-models"
    user = setup(url)
    ways = {
        "open": (root_identity(), {"CONTROL_PLANE_ACCESS": "OPEN"}),
        "root": (root_identity(), {"CONTROL_PLANE_ACCESS": "IAM_POLICIES"}),
        "cached": (user, {"CONTROL_PLANE_ACCESS": "IAM_POLICIES", "AUTHORIZATION_CACHE_SECONDS": "300"}),
        "simulated": (user, {"CONTROL_PLANE_ACCESS": "IAM_POLICIES", "AUTHORIZATION_CACHE_SECONDS": "0"}),
    }
    print(f"DescribeCampaign through the control-plane handler, {args.calls} calls a way")
    reference = 0.0
    for name, (identity, environment) in ways.items():
        timings = run(args.calls, identity, environment)
        p50, p99 = np.percentile(timings, [50, 99])
        reference = reference or float(p50)
        print(f"  {name:<10} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  p50 ratio to open {p50 / reference:5.2f}x")
    server.stop()


if __name__ == "__main__":
    main()
