"""Which roles a batch job may name: BatchJobRoleNamePattern, the same in `make run` as deployed
(issues 16 and 21).

The deployed worker may only sts:AssumeRole ``role/${BatchJobRoleNamePattern}`` of its account;
CreateBatchInferenceJob applies the same rule at once, so a job naming another role is refused
with the reason everywhere, and ``make run`` (where the embedded STS assumes anything) agrees.
The default is "*", as in Personalize: iam:PassRole and the role's trust policy are the guard,
and a stack that opens its control plane (no PassRole check) must name its roles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_personalize.local_process import start_local_stack
from lambda_personalize.template import LocalTemplate, TemplateError
from personalize_core.control.batch_jobs import check_role
from personalize_core.errors import InvalidInputException
from tests.conftest import BatchEnv
from tests.utils import ACCOUNT, REGION, ROOT, clear_process_caches

SAMPLE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/PersonalizeRoleBatchInference"  # as sample code names it


@pytest.mark.parametrize(
    ("role", "pattern", "allowed"),
    [
        (SAMPLE_ROLE, "*", True),
        (f"arn:aws:iam::{ACCOUNT}:role/service-role/AmazonPersonalize-ExecutionRole-1", "*", True),
        ("arn:aws:iam::999999999999:role/personalize-batch-x", "*", False),  # another account
        (SAMPLE_ROLE, "personalize-batch-*", False),
        (f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-movies", "personalize-batch-*", True),
        (f"arn:aws:iam::{ACCOUNT}:role/teams/personalize-batch-a", "teams/personalize-*", True),
        (f"arn:aws:iam::{ACCOUNT}:role/teams/personalize-batch-a", "personalize-*", False),
        (f"arn:aws:iam::{ACCOUNT}:role/batch-7", "batch-?", True),
        (f"arn:aws:iam::{ACCOUNT}:role/batch-17", "batch-?", False),
        (f"arn:aws:iam::{ACCOUNT}:role/Personalize.x", "Personalize.x", True),
        (f"arn:aws:iam::{ACCOUNT}:role/PersonalizeAx", "Personalize.x", False),  # "." is no wildcard
    ],
)
def test_the_pattern_matches_as_iam_matches_the_workers_grant(role: str, pattern: str, allowed: bool) -> None:
    if allowed:
        check_role(role, pattern, ACCOUNT)
    else:
        with pytest.raises(InvalidInputException, match="BatchJobRoleNamePattern"):
            check_role(role, pattern, ACCOUNT)


def create(control_plane: Any, batch_env: BatchEnv, version: str, role: str) -> str:
    return str(
        control_plane.create_batch_inference_job(
            jobName=f"roles-{abs(hash(role)) % 10**8}",
            solutionVersionArn=version,
            jobInput={"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in.jsonl"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
            roleArn=role,
        )["batchInferenceJobArn"]
    )


def test_create_applies_the_stacks_pattern(
    control_plane: Any, batch_env: BatchEnv, batch_event_version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the default pattern, Then a role named as sample code names it is accepted
    create(control_plane, batch_env, batch_event_version, SAMPLE_ROLE)
    # Given a stack that names its roles, Then that role is refused at once, saying why
    monkeypatch.setenv("BATCH_JOB_ROLE_NAME_PATTERN", "personalize-batch-*")
    clear_process_caches()
    with pytest.raises(control_plane.exceptions.InvalidInputException) as caught:
        create(control_plane, batch_env, batch_event_version, f"{SAMPLE_ROLE}2")
    message = caught.value.response["Error"]["Message"]
    assert "matching BatchJobRoleNamePattern 'personalize-batch-*'" in message
    # And so is a dataset import job's (the training function assumes it under the same grant)
    with pytest.raises(control_plane.exceptions.InvalidInputException, match="BatchJobRoleNamePattern"):
        control_plane.create_dataset_import_job(
            jobName="outside",
            datasetArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/g/INTERACTIONS",
            dataSource={"dataLocation": f"s3://{batch_env.data_bucket}/interactions.csv"},
            roleArn=SAMPLE_ROLE,
        )


def test_an_open_control_plane_must_name_its_roles() -> None:
    # Given the template with its control plane opened, as make run and CloudFormation read it
    template = ROOT / "template.yaml"
    # Then "*" is refused (nothing would check iam:PassRole), and a narrower pattern is accepted
    with pytest.raises(TemplateError, match="ControlPlaneAccess=Open checks no iam:PassRole"):
        LocalTemplate(template, parameter_overrides={"ControlPlaneAccess": "Open"}).check_rules()
    LocalTemplate(
        template,
        parameter_overrides={"ControlPlaneAccess": "Open", "BatchJobRoleNamePattern": "personalize-batch-*"},
    ).check_rules()
    LocalTemplate(template).check_rules()


@pytest.mark.slow
def test_make_run_refuses_roles_outside_the_pattern_as_the_deployed_stack(tmp_path: Path) -> None:
    # Given `make run` with a stack that names its batch roles
    stack = start_local_stack(
        tmp_path, ["--no-demo", "--parameter-overrides", "BatchJobRoleNamePattern=personalize-batch-*"]
    )
    try:
        personalize = stack.client("personalize", REGION)
        request = {
            "jobName": "outside",
            "solutionVersionArn": f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/s/v1",
            "jobInput": {"s3DataSource": {"path": "s3://some-bucket/in.jsonl"}},
            "jobOutput": {"s3DataDestination": {"path": "s3://some-bucket/out/"}},
            "roleArn": SAMPLE_ROLE,
        }
        # When a job names a role outside it, Then it is refused at once, as the deployed stack refuses it
        with pytest.raises(ClientError) as caught:
            personalize.create_batch_inference_job(**request)
        assert caught.value.response["Error"]["Code"] == "InvalidInputException"
        assert "BatchJobRoleNamePattern 'personalize-batch-*'" in caught.value.response["Error"]["Message"]
    finally:
        stack.stop()
    # And an open control plane with "*" does not even start, as CloudFormation would not deploy it
    with pytest.raises(Exception, match="ControlPlaneAccess=Open checks no iam:PassRole"):
        start_local_stack(
            tmp_path / "open", ["--no-demo", "--parameter-overrides", "ControlPlaneAccess=Open"]
        )
