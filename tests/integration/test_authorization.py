"""Personalize's authorisation model in the control plane (issue 16), with real IAM policy documents.

Each caller is an IAM user (or an assumed-role session) of the embedded IAM, holding real policy
documents - among them AWS's own AmazonPersonalizeFullAccess, as moto ships it - and calls the
control plane with an unchanged boto3 ``personalize`` client signed with its own keys, over HTTP.
The local API reports the signer as API Gateway's IAM auth does; the control plane asks IAM's
``SimulatePrincipalPolicy`` (the embedded IAM evaluates it with moto's policy engine, not ours).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.iam.aws_managed_policies import aws_managed_policies_data

from lambda_personalize.local_api import LocalApiServer, proxy_event
from personalize_core.control.permissions import RESOURCES
from personalize_core.edge.authorization import get_authorizer
from tests.conftest import BatchEnv, signed_by
from tests.utils import ACCOUNT, REGION, clear_process_caches, invoke, load_function

ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}"
VERSION = f"{ARN}:solution/demo-user-personalization"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-other"
FULL_ACCESS = json.loads(aws_managed_policies_data)["AmazonPersonalizeFullAccess"]["Document"]
READER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["personalize:Describe*", "personalize:List*"], "Resource": "*"}
    ],
}


def allow(actions: list[str], resources: list[str], **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.fixture
def iam(moto_url: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def plane_url(serving_env: str) -> Iterator[str]:
    handler = load_function("control_plane").lambda_handler
    server = LocalApiServer({("POST", "/"): ("ControlPlaneFunction", handler)}, identity=signed_by).start()
    yield server.url
    server.stop()


Client = Callable[..., Any]


@pytest.fixture
def client_for(iam: Any, plane_url: str) -> Client:
    """``client_for(policy, ...)``: a personalize client signed by a new IAM user holding those policies."""

    def make(*policies: dict[str, Any], managed: dict[str, Any] | None = None) -> Any:
        user = f"u-{uuid.uuid4().hex[:10]}"
        iam.create_user(UserName=user)
        for i, policy in enumerate(policies):
            iam.put_user_policy(UserName=user, PolicyName=f"p{i}", PolicyDocument=json.dumps(policy))
        if managed is not None:
            arn = iam.create_policy(PolicyName=f"m-{user}", PolicyDocument=json.dumps(managed))["Policy"][
                "Arn"
            ]
            iam.attach_user_policy(UserName=user, PolicyArn=arn)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return boto3.client(
            "personalize",
            endpoint_url=plane_url,
            region_name=REGION,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            config=Config(retries={"max_attempts": 1}),
        )

    return make


def denied(
    call: Callable[[], Any], action: str, resource: str, why: str = "because no policy allows it"
) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"is not authorized to perform: {action} on resource: {resource} {why or ''}" in error["Message"]
    return str(error["Message"])


def version_of(client: Any) -> str:
    return str(
        client.list_solution_versions(solutionArn=VERSION)["solutionVersions"][0]["solutionVersionArn"]
    )


def test_amazons_own_full_access_policy_allows_every_operation(
    client_for: Client, batch_env: BatchEnv
) -> None:
    # Given a user holding AmazonPersonalizeFullAccess (the managed policy's document, as AWS wrote it)
    client = client_for(managed=FULL_ACCESS)
    version = version_of(client)
    # Then it can create, update, describe, list and delete, and start a batch job with a role
    # passed to Personalize (the policy's iam:PassRole is conditioned on iam:PassedToService)
    arn = client.create_campaign(name=f"full-{uuid.uuid4().hex[:6]}", solutionVersionArn=version)[
        "campaignArn"
    ]
    client.update_campaign(campaignArn=arn, minProvisionedTPS=2)
    assert client.describe_campaign(campaignArn=arn)["campaign"]["minProvisionedTPS"] == 2
    client.delete_campaign(campaignArn=arn)
    job = client.create_batch_inference_job(
        jobName=f"full-{uuid.uuid4().hex[:6]}",
        solutionVersionArn=version,
        jobInput={"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in.jsonl"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
        roleArn=ROLE,
    )["batchInferenceJobArn"]
    assert client.describe_batch_inference_job(batchInferenceJobArn=job)["batchInferenceJob"]["jobName"]


def test_a_reader_reads_and_changes_nothing(client_for: Client, personalize: Any) -> None:
    # Given a campaign, and a user allowed personalize:Describe* and List* only
    version = version_of(personalize)
    name = f"read-{uuid.uuid4().hex[:6]}"
    arn = personalize.create_campaign(name=name, solutionVersionArn=version)["campaignArn"]
    reader = client_for(READER)
    # Then it can describe and list
    assert reader.describe_campaign(campaignArn=arn)["campaign"]["name"] == name
    assert name in [c["name"] for c in reader.list_campaigns()["campaigns"]]
    # And every change is an AccessDeniedException in IAM's words, naming the action and resource
    denied(
        lambda: reader.update_campaign(campaignArn=arn, minProvisionedTPS=3),
        "personalize:UpdateCampaign",
        arn,
    )
    denied(lambda: reader.delete_campaign(campaignArn=arn), "personalize:DeleteCampaign", arn)
    denied(
        lambda: reader.create_campaign(name="read-x", solutionVersionArn=version),
        "personalize:CreateCampaign",
        f"{ARN}:campaign/read-x",
    )
    # And nothing changed
    assert personalize.describe_campaign(campaignArn=arn)["campaign"]["minProvisionedTPS"] == 1


def test_a_writer_scoped_to_its_campaigns_cannot_touch_others(client_for: Client, personalize: Any) -> None:
    version = version_of(personalize)
    ours = personalize.create_campaign(name=f"team-a-{uuid.uuid4().hex[:6]}", solutionVersionArn=version)
    theirs = personalize.create_campaign(name=f"team-b-{uuid.uuid4().hex[:6]}", solutionVersionArn=version)
    writer = client_for(
        allow(["personalize:UpdateCampaign", "personalize:DescribeCampaign"], [f"{ARN}:campaign/team-a-*"])
    )
    writer.update_campaign(campaignArn=ours["campaignArn"], minProvisionedTPS=4)
    denied(
        lambda: writer.update_campaign(campaignArn=theirs["campaignArn"], minProvisionedTPS=4),
        "personalize:UpdateCampaign",
        theirs["campaignArn"],
    )
    denied(writer.list_campaigns, "personalize:ListCampaigns", "*")


def test_an_explicit_deny_wins(client_for: Client, personalize: Any) -> None:
    version = version_of(personalize)
    arn = personalize.create_campaign(name=f"deny-{uuid.uuid4().hex[:6]}", solutionVersionArn=version)[
        "campaignArn"
    ]
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "personalize:Delete*", "Resource": f"{ARN}:campaign/*"}],
    }
    client = client_for(FULL_ACCESS, deny)
    client.describe_campaign(campaignArn=arn)
    denied(
        lambda: client.delete_campaign(campaignArn=arn),
        "personalize:DeleteCampaign",
        arn,
        "with an explicit deny",
    )


def job_request(batch_env: BatchEnv, version: str, role: str) -> dict[str, Any]:
    return {
        "jobName": f"job-{uuid.uuid4().hex[:8]}",
        "solutionVersionArn": version,
        "jobInput": {"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in.jsonl"}},
        "jobOutput": {"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
        "roleArn": role,
    }


def test_a_batch_job_needs_iam_pass_role_on_its_role(
    client_for: Client, batch_env: BatchEnv, personalize: Any
) -> None:
    version = version_of(personalize)
    create_jobs = allow(["personalize:CreateBatchInferenceJob"], [f"{ARN}:batch-inference-job/*"])
    # Given a user who may create jobs but pass no role: the job is refused on iam:PassRole
    no_pass = client_for(create_jobs)
    denied(
        lambda: no_pass.create_batch_inference_job(**job_request(batch_env, version, ROLE)),
        "iam:PassRole",
        ROLE,
    )
    # Given one who may pass one role to Personalize: that role works, another does not
    one_role = client_for(
        create_jobs,
        allow(["iam:PassRole"], [ROLE], StringEquals={"iam:PassedToService": "personalize.amazonaws.com"}),
    )
    one_role.create_batch_inference_job(**job_request(batch_env, version, ROLE))
    denied(
        lambda: one_role.create_batch_inference_job(**job_request(batch_env, version, OTHER_ROLE)),
        "iam:PassRole",
        OTHER_ROLE,
    )
    # Given one who may pass the role only to another service: refused (the condition is evaluated)
    elsewhere = client_for(
        create_jobs,
        allow(["iam:PassRole"], [ROLE], StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"}),
    )
    # (moto's engine calls an Allow whose condition fails a deny; IAM calls it no allow: either refuses)
    denied(
        lambda: elsewhere.create_batch_inference_job(**job_request(batch_env, version, ROLE)),
        "iam:PassRole",
        ROLE,
        why=None,
    )
    # And no refused job was recorded
    names = [j["jobName"] for j in personalize.list_batch_inference_jobs()["batchInferenceJobs"]]
    assert len(names) == 1


def test_an_assumed_role_session_is_governed_by_its_roles_policies(
    iam: Any, moto_url: str, plane_url: str, personalize: Any
) -> None:
    # Given a role (with a path) allowed to describe campaigns, and a session of it
    role = f"reader-{uuid.uuid4().hex[:6]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role_arn = iam.create_role(RoleName=role, Path="/teams/", AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="read", PolicyDocument=json.dumps(READER))
    sts = boto3.client("sts", endpoint_url=moto_url, region_name=REGION)
    session = sts.assume_role(RoleArn=role_arn, RoleSessionName="analyst")["Credentials"]
    client = boto3.client(
        "personalize",
        endpoint_url=plane_url,
        region_name=REGION,
        aws_access_key_id=session["AccessKeyId"],
        aws_secret_access_key=session["SecretAccessKey"],
        aws_session_token=session["SessionToken"],
        config=Config(retries={"max_attempts": 1}),
    )
    arn = personalize.create_campaign(
        name=f"role-{uuid.uuid4().hex[:6]}", solutionVersionArn=version_of(personalize)
    )["campaignArn"]
    # Then the session can read, and may not change anything
    client.describe_campaign(campaignArn=arn)
    message = denied(lambda: client.delete_campaign(campaignArn=arn), "personalize:DeleteCampaign", arn)
    assert message.startswith(f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/analyst ")


def control_plane_call(identity: dict[str, str] | None) -> dict[str, Any]:
    headers = {
        "X-Amz-Target": "AmazonPersonalize.ListCampaigns",
        "Content-Type": "application/x-amz-json-1.1",
    }
    return invoke("control_plane", proxy_event("POST", "/", headers, b"{}", identity=identity))


def test_without_iam_auth_the_control_plane_is_closed_unless_opened(
    serving_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given requests API Gateway did not authenticate with IAM (AuthMode=NONE or API_KEY)
    # Then the control plane refuses them, saying how to open it
    result = control_plane_call({})
    body = json.loads(result["body"])
    assert (result["statusCode"], body["__type"]) == (400, "AccessDeniedException")
    assert "ControlPlaneAccess=Open" in body["message"]
    # And with the explicit opt-in it answers them
    monkeypatch.setenv("CONTROL_PLANE_ACCESS", "OPEN")
    clear_process_caches()
    assert control_plane_call({})["statusCode"] == 200


def test_decisions_are_cached_briefly_and_iam_faults_are_a_503(
    iam: Any, serving_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reader, calling twice within the cache's lifetime
    user = f"c-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="r", PolicyDocument=json.dumps(READER))
    identity = {"userArn": f"arn:aws:iam::{ACCOUNT}:user/{user}"}
    assert control_plane_call(identity)["statusCode"] == 200
    authorizer = get_authorizer()
    asked = authorizer.simulations
    assert control_plane_call(identity)["statusCode"] == 200
    # Then IAM was asked once
    assert authorizer.simulations == asked
    # And when the decision has expired and IAM cannot be reached, the answer is a 503, not a 500
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")
    monkeypatch.setenv("AUTHORIZATION_CACHE_SECONDS", "0")
    clear_process_caches()
    started = time.monotonic()
    result = control_plane_call(identity)
    assert (result["statusCode"], json.loads(result["body"])["__type"]) == (
        503,
        "ServiceUnavailableException",
    )
    assert time.monotonic() - started < 30


def test_every_operation_names_personalizes_resource() -> None:
    # Then every operation the control plane serves has its entry (an operation added without one
    # would need personalize:<Operation> on '*', so a policy scoped to ARNs never covers it)
    assert set(load_function("control_plane").plane.operations) <= set(RESOURCES)


def test_an_import_job_needs_iam_pass_role_and_a_reader_creates_nothing(
    client_for: Client, personalize: Any
) -> None:
    reader = client_for(READER)
    denied(
        lambda: reader.create_dataset_group(name="no-groups"),
        "personalize:CreateDatasetGroup",
        f"{ARN}:dataset-group/no-groups",
    )
    importer = client_for(allow(["personalize:CreateDatasetImportJob"], [f"{ARN}:dataset-import-job/*"]))
    denied(
        lambda: importer.create_dataset_import_job(
            jobName="no-role",
            datasetArn=f"{ARN}:dataset/g/INTERACTIONS",
            dataSource={"dataLocation": "s3://bucket/interactions.csv"},
            roleArn=ROLE,
        ),
        "iam:PassRole",
        ROLE,
    )
