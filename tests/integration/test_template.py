"""The SAM template, checked with real tools: cfn-lint, and the template as cfn-lint decodes it.

The auth of the API is switched by the AuthMode parameter through Fn::If inside the OpenAPI body,
so these tests evaluate the template's Conditions for a given set of parameter values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from personalize_core.batch.jobs import BY_CREATION, BY_SOLUTION_VERSION
from personalize_core.control.records import BY_KIND, BY_PARENT

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SERVING_FUNCTIONS = ("GetRecommendationsFunction", "GetPersonalizedRankingFunction")
S3_READ_ACTIONS = frozenset(
    {
        "s3:getobject",
        "s3:getobjectversion",
        "s3:listbucket",
        "s3:getbucketlocation",
        "s3:listbucketmultipartuploads",
    }
)
RANKING_DIR = "functions/get_personalized_ranking"
READ_ONLY_POLICY_TEMPLATES = frozenset({"S3ReadPolicy"})

Template = dict[str, Any]


@pytest.fixture(scope="module")
def template() -> Template:
    decoded, errors = decode(str(TEMPLATE))
    assert not errors, errors
    assert decoded is not None
    return dict(decoded)


# ---------------------------------------------------------------- helpers


def _defaults(template: Template) -> dict[str, Any]:
    return {name: spec.get("Default") for name, spec in template["Parameters"].items()}


def _resolve(node: Any, template: Template, params: dict[str, Any]) -> Any:
    """Evaluate Ref (parameters), Fn::Equals, Fn::If, Condition and AWS::NoValue; keep the rest."""
    if isinstance(node, list):
        return [v for v in (_resolve(x, template, params) for x in node) if v is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and value == "AWS::NoValue":
            return _NO_VALUE
        if key == "Ref" and value in params:
            return params[value]
        if key == "Fn::Equals":
            left, right = (_resolve(v, template, params) for v in value)
            return left == right
        if key == "Condition":
            return _condition(value, template, params)
        if key == "Fn::If":
            name, when_true, when_false = value
            chosen = when_true if _condition(name, template, params) else when_false
            return _resolve(chosen, template, params)
    resolved = {k: _resolve(v, template, params) for k, v in node.items()}
    return {k: v for k, v in resolved.items() if v is not _NO_VALUE}


_NO_VALUE = object()


def _condition(name: str, template: Template, params: dict[str, Any]) -> bool:
    return bool(_resolve(template["Conditions"][name], template, params))


def _function(template: Template, logical_id: str) -> dict[str, Any]:
    """A function's properties with the Globals merged in (a function's own value wins)."""
    resource = template["Resources"][logical_id]
    assert resource["Type"] == "AWS::Serverless::Function"
    globals_ = template.get("Globals", {}).get("Function", {})
    merged = {**globals_, **resource["Properties"]}
    if "Layers" in resource["Properties"]:  # SAM appends a function's layers to the global ones
        merged["Layers"] = [*globals_.get("Layers", []), *resource["Properties"]["Layers"]]
    return merged


def _functions(template: Template) -> list[str]:
    return [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_violations(policies: list[Any], s3_write_prefixes: tuple[str, ...] = ()) -> list[str]:
    """What in a SAM Policies list goes beyond reading S3 objects of a named bucket.

    ``s3_write_prefixes``: key prefixes (e.g. ``/filters/*``) where S3 writes are allowed, provided
    every resource of the statement is scoped to one of them.
    """
    problems: list[str] = []
    for policy in policies:
        if isinstance(policy, str):
            problems.append(f"managed policy {policy!r} (not reviewable here)")
            continue
        if "Statement" not in policy:
            problems.extend(
                f"policy template {name}" for name in policy if name not in READ_ONLY_POLICY_TEMPLATES
            )
            continue
        for statement in _as_list(policy["Statement"]):
            if statement.get("Effect") != "Allow":
                continue
            for action in _as_list(statement.get("Action", [])):
                if not isinstance(action, str) or "*" in action:
                    problems.append(f"wildcard action {action!r}")
                elif action.lower().startswith("s3:") and action.lower() not in S3_READ_ACTIONS:
                    resources = [repr(r) for r in _as_list(statement.get("Resource", []))]
                    scoped = bool(resources) and all(
                        any(prefix in r for prefix in s3_write_prefixes) for r in resources
                    )
                    if not scoped:
                        problems.append(f"S3 action {action!r} is not read-only")
            if "NotAction" in statement:
                problems.append("NotAction grants everything else")
            if any(resource == "*" for resource in _as_list(statement.get("Resource", []))):
                problems.append("Resource '*'")
    return problems


def _role_statements(template: Template, logical_id: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a function's execution role (the template writes them out), resolved."""
    role_ref = _function(template, logical_id)["Role"]
    assert role_ref == {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}, role_ref
    role = _resolve(template["Resources"][f"{logical_id}Role"], template, params)
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"], "every grant is written out here"
    return [s for p in role["Properties"]["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])]


#: Grants every function has: its own log streams (X-Ray too, only with Tracing=Active).
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def _without_common(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in statements if not set(_as_list(s["Action"])) <= LOG_ACTIONS | XRAY_ACTIONS]


def _api_routes(template: Template) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(METHOD, path) -> (function logical id, its properties) for every Api event."""
    routes = {}
    for logical_id in _functions(template):
        props = _function(template, logical_id)
        for event in props.get("Events", {}).values():
            if event["Type"] == "Api":
                key = (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
                assert key not in routes, f"route {key} is defined twice"
                routes[key] = (logical_id, props)
    return routes


# ---------------------------------------------------------------- the tests


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    # Given the template and cfn-lint's rules (SAM schemas included) for a few regions
    config = ManualArgs(regions=["us-east-1", "eu-west-1", "ap-southeast-2"])

    # When linting it
    matches = lint_file(TEMPLATE, config=config)

    # Then nothing is reported, not even a warning
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_cfn_lint_does_report_a_broken_template(tmp_path: Path) -> None:
    # Given the template with a misspelt property
    broken = tmp_path / "template.yaml"
    broken.write_text(
        TEMPLATE.read_text().replace("Handler: app.lambda_handler", "Handlr: app.lambda_handler", 1)
    )

    # When linting it
    matches = lint_file(broken, config=ManualArgs(regions=["us-east-1"]))

    # Then cfn-lint reports an error (so the clean result above means something)
    assert any(m.rule.id.startswith("E") for m in matches)


def test_every_function_runs_python312_with_the_core_layer(template: Template) -> None:
    # Given every function of the template
    functions = _functions(template)
    assert functions

    for logical_id in functions:
        # When reading its effective (Globals-merged) properties
        props = _function(template, logical_id)

        # Then it runs python3.12 with the core layer, on the stack's architecture, traced as asked
        assert props["Runtime"] == "python3.12", logical_id
        assert {"Ref": "CoreLayer"} in props["Layers"], logical_id
        assert props["Architectures"] == [{"Ref": "Architecture"}], logical_id
        assert props["Tracing"] == {"Ref": "Tracing"}, logical_id


@pytest.mark.parametrize(
    ("tracing", "disabled", "api_traced"), [(None, "true", False), ("Active", "false", True)]
)
def test_tracing_is_a_parameter_off_by_default(
    template: Template, tracing: str | None, disabled: str, api_traced: bool
) -> None:
    # Given the default parameters, or Tracing=Active
    params = _defaults(template) | ({"Tracing": tracing} if tracing else {})
    # When resolving the functions' environment and the API's stage
    environment = _resolve(template["Globals"]["Function"]["Environment"], template, params)
    api = _resolve(template["Resources"]["PersonalizeApi"]["Properties"], template, params)
    # Then X-Ray follows the parameter, and Powertools' Tracer (the X-Ray SDK import) with it
    assert _resolve(template["Globals"]["Function"]["Tracing"], template, params) == (
        tracing or "PassThrough"
    )
    assert environment["Variables"]["POWERTOOLS_TRACE_DISABLED"] == disabled
    assert api["TracingEnabled"] is api_traced


def test_the_core_layer_is_built_for_python312_from_layers_core(template: Template) -> None:
    # Given the layer resource
    layer = template["Resources"]["CoreLayer"]

    # When reading how it is built
    props, metadata = layer["Properties"], layer["Metadata"]

    # Then it is layers/core/ built by its Makefile, for python3.12 on the stack's architecture
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert props["ContentUri"].rstrip("/") == "layers/core"
    assert props["CompatibleRuntimes"] == ["python3.12"]
    assert props["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert metadata["BuildMethod"] == "makefile"
    assert metadata["BuildArchitecture"] == {"Ref": "Architecture"}
    assert "build-CoreLayer:" in (ROOT / "layers/core/Makefile").read_text()
    assert (ROOT / "layers/core/personalize_core/__init__.py").is_file()
    requirements = (ROOT / "layers/core/requirements.txt").read_text().lower().splitlines()
    names = {line.split(">")[0].split("=")[0].split("[")[0].strip() for line in requirements}
    assert {"numpy", "aws-lambda-powertools"} <= names
    assert not names & {"boto3", "botocore"}, "the Lambda runtime provides boto3"


@pytest.mark.parametrize(
    ("method", "path", "logical_id", "code_uri"),
    [
        ("POST", "/recommendations", "GetRecommendationsFunction", "functions/get_recommendations"),
        ("POST", "/personalize-ranking", "GetPersonalizedRankingFunction", RANKING_DIR),
        ("POST", "/", "ControlPlaneFunction", "functions/control_plane"),
        ("POST", "/events", "EventsFunction", "functions/events"),
        ("POST", "/items", "EventsFunction", "functions/events"),
        ("POST", "/users", "EventsFunction", "functions/events"),
    ],
)
def test_runtime_routes_map_to_their_functions(
    template: Template, method: str, path: str, logical_id: str, code_uri: str
) -> None:
    # Given the Api events of every function
    routes = _api_routes(template)

    # When looking the route up
    function_id, props = routes[(method, path)]

    # Then it is served by the right function, from the right folder, on PersonalizeApi
    assert function_id == logical_id
    assert props["CodeUri"].rstrip("/") == code_uri
    assert props["Handler"] == "app.lambda_handler"
    assert (ROOT / code_uri / "app.py").is_file()
    event = next(e for e in props["Events"].values() if e["Properties"]["Path"] == path)
    assert event["Properties"]["RestApiId"] == {"Ref": "PersonalizeApi"}


@pytest.mark.parametrize("logical_id", SERVING_FUNCTIONS)
def test_serving_functions_read_the_model_and_events_and_write_only_recommendations(
    template: Template, logical_id: str
) -> None:
    # Given a serving function's role, with the default parameters
    params = _defaults(template)
    statements = _without_common(_role_statements(template, logical_id, params))

    # When reviewing every statement
    problems = policy_violations([{"Statement": statements}])
    by_action = {a: s for s in statements for a in _as_list(s["Action"])}

    # Then nothing writes S3, nothing is a wildcard: the model bucket is read, the events table read
    # (a tracked group's user events, every request), and written only under R# (each answer's
    # items, for implicit impressions: the PutItem's keys are bound by dynamodb:LeadingKeys)
    assert problems == []
    assert set(by_action) == {
        "s3:GetObject",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
    }
    for action, statement in by_action.items():
        owner = "ModelBucket" if action.startswith("s3:") else "EventsTable"
        assert owner in repr(statement["Resource"]), statement
    assert by_action["dynamodb:PutItem"]["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["R#*"]}
    }
    assert "Condition" not in by_action["dynamodb:GetItem"]


def _allow(action: Any, resource: str = "arn:aws:s3:::bucket/*") -> dict[str, Any]:
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([_allow("s3:PutObject")], "not read-only"),
        ([_allow(["s3:GetObject", "s3:DeleteObject"])], "not read-only"),
        ([_allow("*")], "wildcard"),
        ([_allow(["s3:Get*"])], "wildcard"),
        ([_allow("s3:GetObject", resource="*")], "Resource '*'"),
        ([{"S3CrudPolicy": {"BucketName": "b"}}], "policy template S3CrudPolicy"),
        (["AmazonS3FullAccess"], "managed policy"),
    ],
)
def test_the_least_privilege_check_catches_write_and_wildcard_grants(
    policies: list[Any], expected: str
) -> None:
    # Given a policy list that grants too much
    # When reviewing it
    problems = policy_violations(policies)

    # Then the review says why
    assert any(expected in p for p in problems), problems


def test_the_model_bucket_is_created_only_when_no_name_is_given(template: Template) -> None:
    # Given the bucket resource and the functions' environment
    bucket = template["Resources"]["ModelBucket"]
    env = template["Globals"]["Function"]["Environment"]["Variables"]

    # When the parameter is left empty, or names an existing bucket
    created = _condition(bucket["Condition"], template, {**_defaults(template)})
    given = _condition(bucket["Condition"], template, {**_defaults(template), "ModelBucketName": "mine"})
    env_given = _resolve(env, template, {**_defaults(template), "ModelBucketName": "mine"})

    # Then the stack creates a private, encrypted, versioned bucket only in the first case
    assert created
    assert not given
    assert env_given["MODEL_BUCKET"] == "mine"
    props = bucket["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"].values())


def test_auth_mode_defaults_to_iam(template: Template) -> None:
    # Given the AuthMode parameter
    # When reading its default
    # Then requests must be SigV4-signed unless the deployer chooses otherwise
    assert template["Parameters"]["AuthMode"]["Default"] == "IAM"


@pytest.mark.parametrize(
    ("auth_mode", "security", "with_usage_plan"),
    [
        ("IAM", [{"sigv4": []}], False),
        ("API_KEY", [{"api_key": []}], True),
        ("NONE", [], False),
    ],
)
def test_every_route_gets_the_auth_of_auth_mode(
    template: Template, auth_mode: str, security: list[Any], with_usage_plan: bool
) -> None:
    # Given the API's OpenAPI body, resolved for an AuthMode
    params = {**_defaults(template), "AuthMode": auth_mode}
    api = template["Resources"]["PersonalizeApi"]
    body = _resolve(api["Properties"]["DefinitionBody"], template, params)

    # When looking at each route the functions declare
    routes = _api_routes(template)

    # Then each of them has exactly the security of that mode (no route is left open by mistake)
    assert api["Properties"].get("Auth") is None, "auth is in the body, switched by AuthMode"
    assert routes
    for method, path in routes:
        assert body["paths"][path][method.lower()]["security"] == security, (auth_mode, method, path)
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    plan = template["Resources"]["ApiUsagePlan"]
    assert _condition(plan["Condition"], template, params) is with_usage_plan
    assert _condition(template["Resources"]["ApiKey"]["Condition"], template, params) is with_usage_plan


def test_outputs_give_the_endpoint_the_bucket_and_the_functions(template: Template) -> None:
    # Given the outputs
    outputs = template["Outputs"]

    # When reading the endpoint
    api_url = outputs["ApiUrl"]["Value"]["Fn::Sub"]

    # Then it is the Prod stage of PersonalizeApi, and the bucket and function ARNs are there
    assert api_url == "https://${PersonalizeApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod"
    assert template["Resources"]["PersonalizeApi"]["Properties"]["StageName"] == "Prod"
    assert "ModelBucketName" in outputs
    for logical_id in SERVING_FUNCTIONS:
        assert outputs[f"{logical_id}Arn"]["Value"] == {"Fn::GetAtt": [logical_id, "Arn"]}


def test_the_api_merges_the_functions_integrations_into_its_body(template: Template) -> None:
    # Given the API, whose inline OpenAPI body only carries the auth
    props = template["Resources"]["PersonalizeApi"]["Properties"]

    # When SAM transforms it
    # Then it must merge the Api events' integrations into that body: without MergeDefinitions
    # SAM leaves an inline body alone and the routes would have no Lambda behind them
    assert props["MergeDefinitions"] is True


def _sam_transform(template_text: str, params: dict[str, str]) -> Template:
    sam = yaml_parse(template_text)
    for resource in sam["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if isinstance(resource.get("Properties", {}).get(key), str):
                resource["Properties"][key] = "s3://bucket/key.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return dict(transform(sam, params, NoManagedPolicies()))


@pytest.mark.parametrize("auth_mode", ["IAM", "API_KEY", "NONE"])
def test_the_sam_transform_wires_every_route_to_its_function(template: Template, auth_mode: str) -> None:
    # Given the template as CloudFormation receives it after the SAM transform
    cfn = _sam_transform(TEMPLATE.read_text(), {"AuthMode": auth_mode})
    body = cfn["Resources"]["PersonalizeApi"]["Properties"]["Body"]

    for (method, path), (logical_id, _props) in _api_routes(template).items():
        # When looking at a route of the generated REST API
        operation = body["paths"][path][method.lower()]

        # Then it is a Lambda proxy integration of its function, with the AuthMode switch kept
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"
        # (the function itself, or its published alias where AutoPublishAlias is set, for SnapStart)
        uri = integration["uri"]["Fn::Sub"]
        assert f"${{{logical_id}.Arn}}" in uri or f"${{{logical_id}Aliaslive}}" in uri
        assert (
            operation["security"]
            == template["Resources"]["PersonalizeApi"]["Properties"]["DefinitionBody"]["paths"][path][
                method.lower()
            ]["security"]
        )


@pytest.mark.parametrize("logical_id", SERVING_FUNCTIONS)
def test_the_transformed_roles_only_read_s3(logical_id: str) -> None:
    # Given the template as CloudFormation receives it after the SAM transform
    cfn = _sam_transform(TEMPLATE.read_text(), {})
    role = cfn["Resources"][f"{logical_id}Role"]["Properties"]

    # When reviewing the serving function's role
    problems = policy_violations([p["PolicyDocument"] for p in role.get("Policies", [])])

    # Then SAM added nothing to it (no managed policy: SQS or X-Ray on '*'), and it only reads S3
    assert problems == []
    assert "ManagedPolicyArns" not in role
    assert cfn["Resources"][logical_id]["Properties"]["Role"] == {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}


@pytest.mark.parametrize("mode", ["None", "PublishedVersions"])
def test_snapstart_is_a_parameter_of_get_recommendations_with_preloaded_campaigns(mode: str) -> None:
    # Given the template transformed with the SnapStart option
    cfn = _sam_transform(TEMPLATE.read_text(), {"SnapStart": mode})
    resources = cfn["Resources"]
    function = resources["GetRecommendationsFunction"]["Properties"]
    # Then SnapStart follows the parameter, a version and its alias are published, and the
    # function learns which campaigns to load during init
    assert function["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}
    assert any(r["Type"] == "AWS::Lambda::Alias" for r in resources.values())
    assert "PRELOAD_CAMPAIGNS" in function["Environment"]["Variables"]


# ---------------------------------------------------------------- batch inference (issue 4)

#: Each function's grants: action -> the resources (by logical id or ARN fragment) it is granted on.
BATCH_GRANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "ControlPlaneFunction": {
        "s3:PutObject": ("ModelBucket",),  # filters/* and campaigns/* only (the management API)
        "s3:DeleteObject": ("ModelBucket",),
        # job records, training records, and (G#, T# items only) event trackers' claims and lookups
        "dynamodb:PutItem": ("JobsTable", "RecordsTable", "EventsTable"),
        "dynamodb:GetItem": ("JobsTable", "RecordsTable"),
        "dynamodb:UpdateItem": ("JobsTable", "EventsTable"),
        "dynamodb:Query": ("JobsTable", "RecordsTable"),
        "sqs:SendMessage": ("ShardQueue", "TrainingQueue"),
        "s3:GetObject": ("ModelBucket",),
        "s3:ListBucket": ("ModelBucket",),
        "iam:SimulatePrincipalPolicy": ("iam::",),  # the callers' policies (ControlPlaneAccess=IamPolicies)
        "iam:GetRole": (":role/",),
        "dynamodb:DeleteItem": ("RecordsTable", "EventsTable"),
        "scheduler:CreateSchedule": ("TrainingScheduleGroup",),
        "scheduler:UpdateSchedule": ("TrainingScheduleGroup",),
        "scheduler:GetSchedule": ("TrainingScheduleGroup",),
        "scheduler:DeleteSchedule": ("TrainingScheduleGroup",),
        "iam:PassRole": ("SchedulerRole",),
    },
    "BatchWorkerFunction": {
        "dynamodb:GetItem": ("JobsTable", "EventsTable"),
        "dynamodb:UpdateItem": ("JobsTable",),
        "dynamodb:BatchGetItem": ("EventsTable",),  # users' recent events, as in real time
        "sqs:SendMessage": ("ShardQueue",),
        "sts:AssumeRole": ("BatchJobRoleNamePattern",),
        "s3:GetObject": ("ModelBucket",),
        "s3:ListBucket": ("ModelBucket",),
        "sqs:ReceiveMessage": ("ShardQueue",),  # its SQS event source
        "sqs:DeleteMessage": ("ShardQueue",),
        "sqs:GetQueueAttributes": ("ShardQueue",),
    },
    "TrainingFunction": {
        "dynamodb:GetItem": ("RecordsTable",),
        "dynamodb:PutItem": ("RecordsTable",),
        "dynamodb:Query": ("RecordsTable",),
        "dynamodb:BatchGetItem": ("EventsTable",),  # PutItems / PutUsers records
        "sqs:SendMessage": ("TrainingQueue",),
        "sts:AssumeRole": ("BatchJobRoleNamePattern",),
        "s3:GetObject": ("ModelBucket",),  # events/ too: the recorded events
        "s3:ListBucket": ("ModelBucket",),
        "s3:PutObject": ("ModelBucket",),  # datasets/*, solutions/*, recommenders/*, campaigns/* only
        "s3:DeleteObject": ("ModelBucket",),
        "sqs:ReceiveMessage": ("TrainingQueue",),  # its SQS event source
        "sqs:DeleteMessage": ("TrainingQueue",),
        "sqs:GetQueueAttributes": ("TrainingQueue",),
    },
    "EventsFunction": {
        "dynamodb:GetItem": ("EventsTable", "RecordsTable"),  # and PutItems' dataset and schema
        "dynamodb:BatchGetItem": ("EventsTable",),
        "dynamodb:UpdateItem": ("EventsTable",),
        "dynamodb:PutItem": ("EventsTable",),
        "firehose:PutRecordBatch": ("EventsDeliveryStream",),
        "s3:GetObject": ("ModelBucket",),  # a published solution's columns (PutItems on its group)
        "s3:ListBucket": ("ModelBucket",),
        "iam:SimulatePrincipalPolicy": ("iam::",),  # its callers' policies, as the control plane
        "iam:GetRole": (":role/",),
    },
}


#: Where a function may write the model bucket: the management API's filters and campaign and
#: recommender pointers; training's imported data, versions and the pointers it moves.
MANAGEMENT_WRITE_PREFIXES = {
    "ControlPlaneFunction": ("/filters/*", "/campaigns/*", "/recommenders/*"),
    "TrainingFunction": ("/datasets/*", "/solutions/*", "/recommenders/*", "/campaigns/*"),
}


@pytest.mark.parametrize("logical_id", sorted(BATCH_GRANTS))
def test_batch_functions_get_exactly_their_grants(template: Template, logical_id: str) -> None:
    # Given a batch function's role, with the default parameters
    params = _defaults(template)
    statements = _without_common(_role_statements(template, logical_id, params))

    # When listing every action with the resource it is granted on
    granted = {(a, repr(s["Resource"])) for s in statements for a in _as_list(s["Action"])}

    # Then the function has exactly its grants, each scoped to its own resource: no S3 writes (the
    # caller's data is written with the job's role), no wildcard actions, no Resource '*'
    assert policy_violations([{"Statement": statements}], MANAGEMENT_WRITE_PREFIXES.get(logical_id, ())) == []
    assert {action for action, _ in granted} == set(BATCH_GRANTS[logical_id])
    for action, resource in granted:
        assert any(name in resource for name in BATCH_GRANTS[logical_id][action]), (action, resource)


def test_the_worker_may_only_assume_roles_of_its_account_matching_the_pattern(template: Template) -> None:
    # Given the worker's AssumeRole statement
    statements = _role_statements(template, "BatchWorkerFunction", _defaults(template))
    statement = next(s for s in statements if s["Action"] == "sts:AssumeRole")
    # Then it names roles of this account only, by the stack's pattern
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${BatchJobRoleNamePattern}"
    }


def test_the_shard_queue_suits_the_worker(template: Template) -> None:
    # Given the worker, its SQS event and the shard queue
    worker = _function(template, "BatchWorkerFunction")
    event = next(e for e in worker["Events"].values() if e["Type"] == "SQS")["Properties"]
    queue = template["Resources"]["ShardQueue"]["Properties"]
    env = worker["Environment"]["Variables"]

    # Then a message outlives a worker that times out six times over (Lambda's guidance), comes back
    # as many times as the worker counts on before failing its job, and then goes to the DLQ
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ShardDeadLetterQueue", "Arn"]}
    assert int(env["BATCH_MAX_RECEIVES"]) == queue["RedrivePolicy"]["maxReceiveCount"]
    # And one failed message does not fail its batch
    assert event["Queue"] == {"Fn::GetAtt": ["ShardQueue", "Arn"]}
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= event["BatchSize"] <= 10
    # And both batch functions find the table and the queue through settings.py's variables
    for logical_id in ("ControlPlaneFunction", "BatchWorkerFunction"):
        variables = _function(template, logical_id)["Environment"]["Variables"]
        assert variables["JOBS_TABLE"] == {"Ref": "JobsTable"}
        assert variables["SHARD_QUEUE_URL"] == {"Ref": "ShardQueue"}


def test_the_jobs_table_has_the_indexes_the_code_queries(template: Template) -> None:
    # Given the table and the names personalize_core.batch.jobs uses
    table = template["Resources"]["JobsTable"]["Properties"]
    indexes = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]
    }

    # Then the key and both listing indexes exist, and records are encrypted and recoverable
    assert table["KeySchema"] == [{"AttributeName": "jobName", "KeyType": "HASH"}]
    assert indexes == {
        BY_CREATION: ["kind", "sortKey"],
        BY_SOLUTION_VERSION: ["solutionVersionArn", "sortKey"],
    }
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


PARAMETER_SETS = [
    {},
    {"Tracing": "Active"},
    {"ControlPlaneAccess": "Open", "AuthMode": "API_KEY"},
    {"ModelBucketName": "theirs", "ApiAccessLogs": "Disabled"},
]


@pytest.mark.parametrize(
    "overrides", PARAMETER_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_no_wildcard_action_or_resource_comes_back(template: Template, overrides: dict[str, str]) -> None:
    # Given every IAM role and policy of the template, resolved for a set of parameters
    params = _defaults(template) | overrides
    reviewed = set(SERVING_FUNCTIONS) | set(BATCH_GRANTS)
    assert set(_functions(template)) == reviewed, "a new function must join a least-privilege review"
    roles = [
        lid for lid, r in template["Resources"].items() if r["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy")
    ]
    # (every function's role is written out; other roles, e.g. the scheduler's, are reviewed too)
    assert {f"{f}Role" for f in reviewed} <= set(roles)
    for role in roles:
        statements = [
            s
            for p in _resolve(template["Resources"][role], template, params)["Properties"].get("Policies", [])
            for s in _as_list(p["PolicyDocument"]["Statement"])
        ]
        for statement in statements:
            actions = _as_list(statement["Action"])
            # Then no action is a wildcard, and no resource is '*', except X-Ray's write actions
            # (they take no resource), and those only with Tracing=Active
            assert all("*" not in a for a in actions), (role, statement)
            assert "NotAction" not in statement, (role, statement)
            assert "NotResource" not in statement, (role, statement)
            if "*" in _as_list(statement["Resource"]):
                assert set(actions) == XRAY_ACTIONS, (role, statement)
        xray = [s for s in statements if set(_as_list(s["Action"])) == XRAY_ACTIONS]
        traced = params["Tracing"] == "Active" and role.removesuffix("Role") in reviewed
        assert len(xray) == (1 if traced else 0), role
    # And after the SAM transform no role gains a managed policy (SAM's would grant '*')
    cfn = _sam_transform(TEMPLATE.read_text(), overrides)
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            assert not resource["Properties"].get("ManagedPolicyArns"), logical_id


def test_the_worker_consumes_only_the_shard_queue(template: Template) -> None:
    # Given the worker's role
    statements = _role_statements(template, "BatchWorkerFunction", _defaults(template))
    # Then its SQS event source may receive and delete messages of the stack's shard queue, nothing else
    sqs = [s for s in statements if any(a.startswith("sqs:") for a in _as_list(s["Action"]))]
    for statement in sqs:
        assert statement["Resource"] == {"Fn::GetAtt": ["ShardQueue", "Arn"]}, statement
    actions = {a for s in sqs for a in _as_list(s["Action"])}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= actions


@pytest.mark.parametrize(("setting", "enabled"), [(None, True), ("Disabled", False)])
def test_api_gateway_access_logs_carry_the_request_id(
    template: Template, setting: str | None, enabled: bool
) -> None:
    params = _defaults(template) | ({"ApiAccessLogs": setting} if setting else {})
    api = _resolve(template["Resources"]["PersonalizeApi"]["Properties"], template, params)
    if not enabled:
        assert "AccessLogSetting" not in api
        return
    logs = api["AccessLogSetting"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    line = json.loads(logs["Format"].replace("\n", ""))
    assert line["requestId"] == "$context.requestId"
    assert line["caller"] == "$context.identity.userArn"
    group = template["Resources"]["ApiAccessLogGroup"]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


@pytest.mark.parametrize(
    ("access", "value", "simulates"), [(None, "IAM_POLICIES", True), ("Open", "OPEN", False)]
)
def test_control_plane_access_is_iam_policies_unless_opened(
    template: Template, access: str | None, value: str, simulates: bool
) -> None:
    params = _defaults(template) | ({"ControlPlaneAccess": access} if access else {})
    variables = _resolve(_function(template, "ControlPlaneFunction")["Environment"], template, params)[
        "Variables"
    ]
    actions = {
        a for s in _role_statements(template, "ControlPlaneFunction", params) for a in _as_list(s["Action"])
    }
    assert variables["CONTROL_PLANE_ACCESS"] == value
    assert ("iam:SimulatePrincipalPolicy" in actions) is simulates
    assert ("iam:GetRole" in actions) is simulates


def test_the_training_queue_and_records_suit_the_training_function(template: Template) -> None:
    # Given the training function, its SQS event, its queue and the records table
    function = _function(template, "TrainingFunction")
    event = next(e for e in function["Events"].values() if e["Type"] == "SQS")["Properties"]
    queue = template["Resources"]["TrainingQueue"]["Properties"]
    table = template["Resources"]["RecordsTable"]["Properties"]
    env = function["Environment"]["Variables"]
    # Then a message outlives a run that times out six times over, one run per invocation, the
    # function fails a record on the receive the queue dead-letters after
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    assert event["BatchSize"] == 1
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert int(env["TRAINING_MAX_RECEIVES"]) == queue["RedrivePolicy"]["maxReceiveCount"]
    # And the records table has the key and the indexes control/records.py queries, encrypted, recoverable
    indexes = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]
    }
    assert table["KeySchema"] == [{"AttributeName": "arn", "KeyType": "HASH"}]
    assert indexes == {BY_KIND: ["kind", "name"], BY_PARENT: ["parentArn", "kindName"]}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    # And its layers are the core's and the training layer (scipy + implicit)
    assert function["Layers"] == [{"Ref": "CoreLayer"}, {"Ref": "TrainingLayer"}]


# ---------------------------------------------------------------- events (issue 17)


def test_the_events_table_suits_the_code_and_expires_what_it_holds(template: Template) -> None:
    table = template["Resources"]["EventsTable"]["Properties"]
    # Then it is keyed as events/table.py reads it, on demand, encrypted, recoverable, with a TTL
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert "GlobalSecondaryIndexes" not in table  # one key lookup per read: no Query, no scan
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    # And every function finds it, with the retention the parameter gives
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["EVENTS_TABLE"] == {"Ref": "EventsTable"}
    assert variables["EVENT_RETENTION_DAYS"] == {"Ref": "EventRetentionDays"}


def test_the_firehose_stream_writes_only_events_to_the_model_bucket(template: Template) -> None:
    params = _defaults(template)
    stream = _resolve(template["Resources"]["EventsDeliveryStream"]["Properties"], template, params)
    role = _resolve(template["Resources"]["EventsDeliveryRole"]["Properties"], template, params)
    destination = stream["ExtendedS3DestinationConfiguration"]
    # Then events land under events/ of the model bucket, encrypted at rest, as Firehose's role
    assert destination["Prefix"] == "events/"
    assert "ModelBucket" in repr(destination["BucketARN"])
    assert destination["RoleARN"] == {"Fn::GetAtt": ["EventsDeliveryRole", "Arn"]}
    assert stream["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    # And the role is Firehose's (this account's) and writes nothing but events/ and events-errors/
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    policies = [p["PolicyDocument"] for p in role["Policies"]]
    assert policy_violations(policies, ("/events/*", "/events-errors/*")) == []
    assert _function(template, "EventsFunction")["Environment"]["Variables"]["EVENTS_DELIVERY_STREAM"] == {
        "Ref": "EventsDeliveryStream"
    }


def test_the_control_plane_writes_only_trackers_into_the_events_table(template: Template) -> None:
    statements = _role_statements(template, "ControlPlaneFunction", _defaults(template))
    statement = next(s for s in statements if "EventsTable" in repr(s["Resource"]))
    assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["G#*", "T#*"]}}
