"""Unchanged Personalize clients against the whole local runtime (`lambda-personalize run`, as `make run`).

boto3 and the AWS CLI only get ``endpoint_url`` / ``--endpoint-url``; botocore parses every answer
and raises every error as its typed exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambda_personalize.template import LocalTemplate
from tests.conftest import LocalStack
from tests.utils import REGION, ROOT, campaign_arn, load_function

USER = campaign_arn("demo-user-personalization")
RELATED = campaign_arn("demo-related-items")
POPULAR = campaign_arn("demo-popular-items")
RANKING = campaign_arn("demo-personalized-ranking")
NO_RETRIES = Config(retries={"max_attempts": 1})


def client(service: str, url: str, validate: bool = True) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        config=NO_RETRIES.merge(Config(parameter_validation=validate)),
    )


def served_routes() -> set[tuple[str, str]]:
    return {(r.method, r.path) for f in LocalTemplate(ROOT / "template.yaml").functions() for r in f.routes}


# -- boto3 personalize-runtime ---------------------------------------------------------------------


def test_every_recipe_answers_through_boto3(local_stack: LocalStack) -> None:
    # Given an unchanged personalize-runtime client pointed at the local runtime
    runtime = client("personalize-runtime", local_stack.api_url)
    # When each demo campaign is asked
    personal = runtime.get_recommendations(campaignArn=USER, userId="user-3", numResults=7)["itemList"]
    related = runtime.get_recommendations(campaignArn=RELATED, itemId="item-5", numResults=7)["itemList"]
    popular = runtime.get_recommendations(campaignArn=POPULAR, userId="user-3", numResults=7)["itemList"]
    ranked = runtime.get_personalized_ranking(
        campaignArn=RANKING, userId="user-3", inputList=["item-1", "item-2", "item-3", "unknown"]
    )["personalizedRanking"]
    # Then botocore parses Personalize's shapes: scores where the recipe has them, sorted
    assert len(personal) == len(related) == len(popular) == 7
    scores = [item["score"] for item in personal]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s < 1 for s in scores)
    assert all("score" not in item for item in related + popular)
    assert "item-5" not in {item["itemId"] for item in related}
    assert [item["itemId"] for item in ranked][-1] == "unknown"
    assert sum(item.get("score", 0.0) for item in ranked) == pytest.approx(1.0, abs=1e-6)


def test_popular_items_follow_the_demo_interactions(local_stack: LocalStack) -> None:
    # Given the Interactions CSV the demo wrote (Personalize's format)
    lines = (local_stack.data_dir / "interactions.csv").read_text().splitlines()
    assert lines[0] == "USER_ID,ITEM_ID,EVENT_TYPE,TIMESTAMP"
    counts: dict[str, int] = {}
    for line in lines[1:]:
        item = line.split(",")[1]
        counts[item] = counts.get(item, 0) + 1
    # When the popular-items campaign is asked
    runtime = client("personalize-runtime", local_stack.api_url)
    popular = runtime.get_recommendations(campaignArn=POPULAR, numResults=5)["itemList"]
    # Then it answers the most interacted-with items, most first (a long tail: the top is far above median)
    top = sorted(counts.values(), reverse=True)
    assert [counts[item["itemId"]] for item in popular] == top[:5]
    assert top[0] > 5 * sorted(counts.values())[len(counts) // 2]


def test_every_runtime_operation_is_served_or_unknown(local_stack: LocalStack) -> None:
    # Given every operation of botocore's personalize-runtime model
    model = botocore.session.get_session().get_service_model("personalize-runtime")
    runtime = client("personalize-runtime", local_stack.api_url, validate=False)
    routes = served_routes()
    for name in model.operation_names:
        operation = model.operation_model(name)
        http = operation.http
        method = getattr(runtime, botocore.xform_name(name))
        if (http["method"], http["requestUri"]) in routes:
            # When a served operation is called with what it needs, Then it answers 200
            campaign = RANKING if name == "GetPersonalizedRanking" else USER
            wanted = {"campaignArn": campaign, "userId": "user-1", "inputList": ["item-1"], "numResults": 1}
            answer = method(**{k: v for k, v in wanted.items() if k in operation.input_shape.members})
            assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200, name
        else:
            # When an operation the template does not serve is called, Then it is a typed "unknown"
            with pytest.raises(ClientError) as caught:
                method(**{"campaignArn": USER} if "campaignArn" in operation.input_shape.members else {})
            assert caught.value.response["Error"]["Code"] == "UnknownOperationException", name


def test_runtime_errors_are_typed_exceptions(local_stack: LocalStack) -> None:
    # Given a client that lets out-of-limit values through to the server
    runtime = client("personalize-runtime", local_stack.api_url, validate=False)
    errors = runtime.exceptions
    # Then every error of the runtime's model is raised as its own class, with the field named
    with pytest.raises(errors.InvalidInputException, match="numResults"):
        runtime.get_recommendations(campaignArn=USER, userId="user-3", numResults=501)
    with pytest.raises(errors.InvalidInputException, match="inputList"):
        runtime.get_personalized_ranking(campaignArn=RANKING, userId="user-3", inputList=[])
    with pytest.raises(errors.ResourceNotFoundException, match="no-such"):
        runtime.get_recommendations(campaignArn=campaign_arn("no-such"), userId="user-3")
    with pytest.raises(errors.ResourceNotFoundException, match="no-such"):
        runtime.get_personalized_ranking(campaignArn=campaign_arn("no-such"), userId="u", inputList=["i"])
    modelled = {
        shape.name
        for name in ("GetRecommendations", "GetPersonalizedRanking")
        for shape in runtime.meta.service_model.operation_model(name).error_shapes
    }
    assert modelled == {"InvalidInputException", "ResourceNotFoundException"}


# -- boto3 personalize (the control plane) -----------------------------------------------------------


def test_control_plane_operations_through_boto3(local_stack: LocalStack) -> None:
    # Given the operations registered on the control plane function, and botocore's personalize model
    registered = set(load_function("control_plane").plane.operations)
    personalize = client("personalize", local_stack.api_url, validate=False)
    model = personalize.meta.service_model
    assert registered <= set(model.operation_names), "a registered operation is not Personalize's"
    for name in model.operation_names:
        method = getattr(personalize, botocore.xform_name(name))
        try:
            # When each operation is called (with an empty request: the server validates)
            method()
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if name in registered:
                # Then a registered operation answers, or refuses with one of its modelled errors
                modelled = {shape.name for shape in model.operation_model(name).error_shapes}
                assert code in modelled, f"{name}: {code} is not one of {sorted(modelled)}"
                typed = tuple(getattr(personalize.exceptions, c) for c in modelled)
                assert isinstance(error, typed)  # noqa: PT017 - one check per operation, in a loop
            else:
                # And every other operation is a typed UnknownOperationException
                assert code == "UnknownOperationException", f"{name}: {code}"
        else:
            assert name in registered, f"{name} answered but is not registered"


# -- the AWS CLI -------------------------------------------------------------------------------------


def aws(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": REGION})
    command = [str(Path(sys.executable).parent / "aws"), "personalize-runtime", *args, "--endpoint-url", url]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_aws_cli_get_recommendations_and_ranking(local_stack: LocalStack) -> None:
    # When the AWS CLI calls both operations
    recommended = aws(
        "get-recommendations", "--campaign-arn", USER, "--user-id", "user-3", "--num-results", "4",
        url=local_stack.api_url,
    )  # fmt: skip
    ranked = aws(
        "get-personalized-ranking", "--campaign-arn", RANKING, "--user-id", "user-3",
        "--input-list", "item-3", "item-1", "item-2",
        url=local_stack.api_url,
    )  # fmt: skip
    # Then it prints Personalize's answers
    assert recommended.returncode == 0, recommended.stderr
    assert len(json.loads(recommended.stdout)["itemList"]) == 4
    assert ranked.returncode == 0, ranked.stderr
    assert sorted(i["itemId"] for i in json.loads(ranked.stdout)["personalizedRanking"]) == [
        "item-1", "item-2", "item-3",
    ]  # fmt: skip


def test_aws_cli_reports_typed_errors(local_stack: LocalStack) -> None:
    missing = aws("get-recommendations", "--campaign-arn", campaign_arn("gone"), "--user-id", "u",
                  url=local_stack.api_url)  # fmt: skip
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_the_printed_commands_work_as_printed(local_stack: LocalStack) -> None:
    # Given the commands `make run` prints (AWS CLI and curl), run from the repository in a shell
    # with no AWS configuration at all
    commands = local_stack.printed_commands
    assert len(commands) >= 4
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for command in commands:
        # When each is pasted, Then it succeeds and prints a Personalize answer
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        if "put-events" in command:
            assert done.stdout.strip() == ""  # PutEvents answers 200 with an empty body
            continue
        answer = json.loads(done.stdout)
        assert answer.get("itemList") or answer.get("personalizedRanking"), command
