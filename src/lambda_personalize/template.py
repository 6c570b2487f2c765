"""Read ``template.yaml`` the way the local runtime needs it: functions, their routes and queues,
their environment, and the storage resources, with CloudFormation's intrinsics resolved.

Only what a local run needs is resolved: ``Ref`` (parameters' defaults or overrides, pseudo
parameters, local resources' physical names), ``Fn::If`` with the template's ``Conditions``,
``Fn::GetAtt`` (``Arn``, ``QueueUrl``, ``QueueName``, ``StreamArn``), ``Fn::Sub``, ``Fn::Join``,
``Fn::Select``, ``Fn::Split`` and the condition functions. Anything else is a ``TemplateError``
naming the function, so a template the runtime cannot read fails loudly rather than half-works.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from samtranslator.yaml_helper import intrinsics_multi_constructor

#: The resource types the local runtime creates in the embedded AWS.
S3_BUCKET = "AWS::S3::Bucket"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"
SQS_QUEUE = "AWS::SQS::Queue"
SCHEDULE_GROUP = "AWS::Scheduler::ScheduleGroup"
FIREHOSE_STREAM = "AWS::KinesisFirehose::DeliveryStream"
LOCAL_RESOURCE_TYPES = (S3_BUCKET, DYNAMODB_TABLE, SQS_QUEUE, SCHEDULE_GROUP, FIREHOSE_STREAM)
FUNCTION = "AWS::Serverless::Function"
NO_VALUE = object()  # AWS::NoValue: the property is dropped


class TemplateError(Exception):
    """The template uses something the local runtime cannot resolve."""


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation's short tags (``!Ref``, ``!If``, ...) as long forms."""


_CfnLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def load_template(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text("utf-8"), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return document


@dataclass(frozen=True, slots=True)
class Stack:
    """Where the local stack lives: the values of CloudFormation's pseudo parameters."""

    name: str = "lambda-personalize-local"
    region: str = "us-east-1"
    account: str = "123456789012"  # moto's default account
    aws_endpoint_url: str = "http://127.0.0.1:5050"


@dataclass(frozen=True, slots=True)
class ApiRoute:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class QueueTrigger:
    queue: str  # logical id of the AWS::SQS::Queue
    batch_size: int
    #: ScalingConfig.MaximumConcurrency: at most this many environments of the function poll it.
    maximum_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str  # "module.attribute", as Lambda reads it
    environment: dict[str, str]
    timeout_seconds: float
    memory_mb: int
    routes: tuple[ApiRoute, ...] = ()
    queues: tuple[QueueTrigger, ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    logical_id: str
    type: str
    physical_name: str
    properties: dict[str, Any] = field(default_factory=dict)  # resolved


class LocalTemplate:
    """A parsed template, resolved for a local stack."""

    def __init__(
        self,
        path: Path,
        stack: Stack | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.root = path.parent
        self.stack = stack or Stack()
        self.document = load_template(path)
        self.resources: dict[str, dict[str, Any]] = self.document["Resources"]
        self.parameters = self._parameter_values(parameter_overrides or {})
        self._conditions: dict[str, bool] = {}
        self.physical_names = {
            logical_id: self._physical_name(logical_id, resource)
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in LOCAL_RESOURCE_TYPES and self._exists(resource)
        }

    # -- parameters and conditions ---------------------------------------------------------------

    def _parameter_values(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.document.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                values[name] = overrides[name]
            elif "Default" in spec:
                values[name] = spec["Default"]
            else:
                raise TemplateError(f"template parameter {name} has no Default: pass a value for it")
        return values

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions: dict[str, Any] = self.document.get("Conditions") or {}
            if name not in definitions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(definitions[name]))
        return self._conditions[name]

    def _exists(self, resource: Mapping[str, Any]) -> bool:
        condition = resource.get("Condition")
        return condition is None or self.condition(str(condition))

    # -- names -----------------------------------------------------------------------------------

    def _physical_name(self, logical_id: str, resource: Mapping[str, Any]) -> str:
        properties = resource.get("Properties") or {}
        kind = resource["Type"]
        explicit = {
            S3_BUCKET: "BucketName",
            DYNAMODB_TABLE: "TableName",
            SQS_QUEUE: "QueueName",
            SCHEDULE_GROUP: "Name",
            FIREHOSE_STREAM: "DeliveryStreamName",
        }[kind]
        if explicit in properties:
            return str(self.resolve(properties[explicit]))
        # CloudFormation's generated names look like <stack>-<LogicalId>-<suffix>; a local stack
        # needs them stable across runs, so the suffix is dropped. S3 names are lower case.
        name = f"{self.stack.name}-{logical_id}"
        if kind == S3_BUCKET:
            name = name.lower()
        if kind == SQS_QUEUE and properties.get("FifoQueue") in (True, "true"):
            name += ".fifo"
        return name

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_names[logical_id]
        region, account = self.stack.region, self.stack.account
        match kind:
            case "AWS::S3::Bucket":
                return f"arn:aws:s3:::{name}"
            case "AWS::DynamoDB::Table":
                return f"arn:aws:dynamodb:{region}:{account}:table/{name}"
            case "AWS::Scheduler::ScheduleGroup":
                return f"arn:aws:scheduler:{region}:{account}:schedule-group/{name}"
            case "AWS::KinesisFirehose::DeliveryStream":
                return f"arn:aws:firehose:{region}:{account}:deliverystream/{name}"
            case _:
                return f"arn:aws:sqs:{region}:{account}:{name}"

    def queue_url(self, logical_id: str) -> str:
        return f"{self.stack.aws_endpoint_url}/{self.stack.account}/{self.physical_names[logical_id]}"

    def queue_by_arn(self, arn: str) -> str:
        """The logical id of the local queue whose ARN this is."""
        for logical_id, resource in self.resources.items():
            is_queue = resource.get("Type") == SQS_QUEUE and logical_id in self.physical_names
            if is_queue and self.arn(logical_id) == arn:
                return logical_id
        raise TemplateError(f"no queue of the template has the ARN {arn}")

    # -- intrinsics ------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its local value."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key in {"Ref", "Condition"} or key.startswith("Fn::"):
                return self._intrinsic(key, argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _intrinsic(self, key: str, argument: Any) -> Any:
        match key:
            case "Ref":
                return self._ref(str(argument))
            case "Condition":
                return self.condition(str(argument))
            case "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            case "Fn::Equals":
                left, right = (self.resolve(v) for v in argument)
                return str(left) == str(right)
            case "Fn::Not":
                return not self.resolve(argument[0])
            case "Fn::And":
                return all(self.resolve(v) for v in argument)
            case "Fn::Or":
                return any(self.resolve(v) for v in argument)
            case "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self._get_att(str(logical_id), str(attribute))
            case "Fn::Sub":
                return self._sub(argument)
            case "Fn::Join":
                separator, values = argument
                return str(separator).join(str(v) for v in self.resolve(values))
            case "Fn::Select":
                index, values = argument
                return self.resolve(values)[int(self.resolve(index))]
            case "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(str(separator))
            case "Fn::ToJsonString":
                return json.dumps(self.resolve(argument), separators=(",", ":"))
        raise TemplateError(f"the local runtime cannot resolve {key}")

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.stack.region,
            "AWS::AccountId": self.stack.account,
            "AWS::StackName": self.stack.name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.stack.region}:{self.stack.account}:stack/"
            f"{self.stack.name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical_names:
            if self.resources[name]["Type"] == SQS_QUEUE:
                return self.queue_url(name)  # as CloudFormation: Ref of a queue is its URL
            return self.physical_names[name]
        if name in self.resources:
            # A resource that does not exist locally (a layer, the API, a role...): a stable
            # stand-in is enough for the places it appears (names in logs, descriptions).
            return f"{self.stack.name}-{name}"
        raise TemplateError(f"Ref to {name}, which is neither a parameter nor a resource")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.physical_names:
            if logical_id in self.resources:
                kind = str(self.resources[logical_id].get("Type", "")).split("::")[-1].lower()
                stack = self.stack
                return f"arn:aws:{kind}:{stack.region}:{stack.account}:{stack.name}-{logical_id}"
            raise TemplateError(f"Fn::GetAtt of {logical_id}, which is not a resource of the template")
        match attribute:
            case "Arn":
                return self.arn(logical_id)
            case "QueueUrl":
                return self.queue_url(logical_id)
            case "QueueName" | "BucketName":
                return self.physical_names[logical_id]
            case "StreamArn":
                return f"{self.arn(logical_id)}/stream/local"
        raise TemplateError(f"the local runtime cannot resolve Fn::GetAtt {logical_id}.{attribute}")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(v) for name, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att(logical_id, attribute))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", substitute, str(text))

    def check_rules(self) -> None:
        """The template's ``Rules``, as CloudFormation applies them before deploying: a rule whose
        condition holds must have every assertion hold (TemplateError with its description)."""
        for name, rule in (self.document.get("Rules") or {}).items():
            condition = rule.get("RuleCondition")
            if condition is not None and not self.resolve(condition):
                continue
            for assertion in rule.get("Assertions") or []:
                if not self.resolve(assertion["Assert"]):
                    description = assertion.get("AssertDescription", f"rule {name} does not hold")
                    raise TemplateError(f"template rule {name}: {description}")

    # -- what the runtime needs ------------------------------------------------------------------

    def local_resources(self) -> list[ResourceSpec]:
        """Buckets, tables and queues, in an order where a resource comes after those it names."""
        pending = {logical_id: self.resources[logical_id] for logical_id in self.physical_names}
        ordered: list[ResourceSpec] = []
        while pending:
            ready = [
                logical_id
                for logical_id, resource in pending.items()
                if not (_references(resource.get("Properties") or {}) & (set(pending) - {logical_id}))
            ]
            if not ready:
                raise TemplateError(f"circular references between {', '.join(sorted(pending))}")
            for logical_id in ready:
                resource = pending.pop(logical_id)
                ordered.append(
                    ResourceSpec(
                        logical_id,
                        resource["Type"],
                        self.physical_names[logical_id],
                        self.resolve(resource.get("Properties") or {}),
                    )
                )
        return ordered

    def iam_auth_routes(self) -> set[tuple[str, str]]:
        """(METHOD, path) of every route an ``AWS::Serverless::Api``'s OpenAPI body puts behind IAM
        auth (a security scheme of ``x-amazon-apigateway-authtype: awsSigv4``), with the
        template's conditions resolved: the routes where API Gateway reports who signed."""
        found: set[tuple[str, str]] = set()
        for resource in self.resources.values():
            if resource.get("Type") != "AWS::Serverless::Api" or not self._exists(resource):
                continue
            body = self.resolve((resource.get("Properties") or {}).get("DefinitionBody") or {})
            definitions = (
                body.get("securityDefinitions") or body.get("components", {}).get("securitySchemes") or {}
            )
            sigv4 = {n for n, d in definitions.items() if d.get("x-amazon-apigateway-authtype") == "awsSigv4"}
            for path, methods in (body.get("paths") or {}).items():
                for method, operation in methods.items():
                    schemes = {
                        name for requirement in operation.get("security") or [] for name in requirement
                    }
                    if schemes & sigv4:
                        found.add((method.upper(), path))
        return found

    def functions(self) -> list[FunctionSpec]:
        globals_ = (self.document.get("Globals") or {}).get("Function") or {}
        specs = []
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != FUNCTION or not self._exists(resource):
                continue
            properties = {**globals_, **(resource.get("Properties") or {})}
            environment = {
                **_variables(self.resolve(globals_.get("Environment") or {})),
                **_variables(self.resolve((resource.get("Properties") or {}).get("Environment") or {})),
            }
            routes: list[ApiRoute] = []
            queues: list[QueueTrigger] = []
            for event in (properties.get("Events") or {}).values():
                event_properties = event.get("Properties") or {}
                if event.get("Type") == "Api":
                    method = str(self.resolve(event_properties["Method"])).upper()
                    routes.append(ApiRoute(method, str(self.resolve(event_properties["Path"]))))
                elif event.get("Type") == "SQS":
                    queue_arn = str(self.resolve(event_properties["Queue"]))
                    batch_size = int(self.resolve(event_properties.get("BatchSize", 10)))
                    scaling = self.resolve(event_properties.get("ScalingConfig") or {})
                    maximum = scaling.get("MaximumConcurrency") if isinstance(scaling, dict) else None
                    queues.append(
                        QueueTrigger(
                            self.queue_by_arn(queue_arn),
                            batch_size,
                            int(maximum) if maximum is not None else None,
                        )
                    )
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    code_uri=self.root / str(self.resolve(properties["CodeUri"])),
                    handler=str(self.resolve(properties["Handler"])),
                    environment=environment,
                    timeout_seconds=float(self.resolve(properties.get("Timeout", 3))),
                    memory_mb=int(self.resolve(properties.get("MemorySize", 128))),
                    routes=tuple(routes),
                    queues=tuple(queues),
                )
            )
        return specs


def _variables(environment: Mapping[str, Any]) -> dict[str, str]:
    variables = environment.get("Variables") or {}
    return {name: _env_string(value) for name, value in variables.items()}


def _env_string(value: Any) -> str:
    # Lambda's environment is strings: CloudFormation writes booleans lower case, numbers as given.
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _references(value: Any) -> set[str]:
    """Logical ids that ``value`` names through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _references(v)
    elif isinstance(value, dict):
        for key, v in value.items():
            if key == "Ref" and isinstance(v, str):
                found.add(v)
            elif key == "Fn::GetAtt":
                found.add(str(v[0] if isinstance(v, list) else v.split(".", 1)[0]))
            elif key == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text))}
                if not isinstance(v, str):
                    found |= _references(v[1])
            else:
                found |= _references(v)
    return found
