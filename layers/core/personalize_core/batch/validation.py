"""The batch control-plane requests, validated against every limit of botocore's Personalize model.

Each violation is an InvalidInputException naming the field (``jobInput.s3DataSource.path is
required``); more than 200 tags is Personalize's TooManyTagsException.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputException, PersonalizeError
from ..names import NAME_MAX, NAME_PATTERN, check_name, parse_arn
from ..requests import NUM_RESULTS_DEFAULT, NUM_RESULTS_MAX, _Fields

S3_LOCATION_MAX = 256
S3_LOCATION = re.compile(r"(s3|http|https)://.+")
KMS_KEY_ARN = re.compile(r"arn:aws.*:kms:.*:[0-9]{12}:key/.*")
KMS_KEY_ARN_MAX = 2048
ROLE_ARN = re.compile(r"arn:([a-z\d-]+):iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
ROLE_ARN_MAX = 256
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
TAGS_MAX = 200
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
# botocore's ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$ (letters, separators, numbers, and _.:/=+-@).
TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
HYPER_PARAMETERS_MAX = 100
HYPER_PARAMETER_NAME_MAX = 256
HYPER_PARAMETER_VALUE_MAX = 1000
RANKING_INFLUENCE_TYPES = frozenset({"POPULARITY", "FRESHNESS"})
JOB_MODES = frozenset({"BATCH_INFERENCE", "THEME_GENERATION"})
LIST_MAX_RESULTS = 100
NEXT_TOKEN_MAX = 1500


class TooManyTagsException(PersonalizeError):
    code = "TooManyTagsException"
    status = 400


@dataclass(frozen=True, slots=True)
class S3Path:
    bucket: str
    key: str

    @property
    def is_prefix(self) -> bool:
        """A path ending in ``/`` (or a bare bucket) names every object under it."""
        return self.key == "" or self.key.endswith("/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_path(value: str, field: str) -> S3Path:
    if not value.startswith("s3://"):
        raise InvalidInputException(
            f"{field} must be an s3:// location (s3://bucket/key or s3://bucket/prefix/)"
        )
    bucket, _, key = value[len("s3://") :].partition("/")
    if BUCKET_NAME.fullmatch(bucket) is None:
        raise InvalidInputException(f"{field} {value!r} does not name a valid S3 bucket")
    return S3Path(bucket, key)


def _s3_data_config(fields: _Fields, key: str) -> tuple[S3Path, str | None, dict[str, Any]]:
    container = fields.body.get(key)
    name = fields.name(key)
    if container is None:
        raise InvalidInputException(f"{name} is required")
    outer_key = "s3DataSource" if key == "jobInput" else "s3DataDestination"
    outer = _Fields(container, f"{name}.", frozenset({outer_key}))
    if outer.body.get(outer_key) is None:
        raise InvalidInputException(f"{name}.{outer_key} is required")
    inner = _Fields(outer.body[outer_key], f"{name}.{outer_key}.", frozenset({"path", "kmsKeyArn"}))
    path = inner.string("path", max_len=S3_LOCATION_MAX, required=True, pattern=S3_LOCATION)
    kms = inner.string("kmsKeyArn", max_len=KMS_KEY_ARN_MAX, pattern=KMS_KEY_ARN)
    assert path is not None
    parsed = parse_s3_path(path, inner.name("path"))
    given = {"path": path} | ({"kmsKeyArn": kms} if kms else {})
    return parsed, kms, {outer_key: given}


def _config(fields: _Fields) -> dict[str, Any]:
    raw = fields.body.get("batchInferenceJobConfig")
    if raw is None:
        return {}
    config = _Fields(
        raw, "batchInferenceJobConfig.", frozenset({"itemExplorationConfig", "rankingInfluence"})
    )
    exploration = config.string_map(
        "itemExplorationConfig",
        max_entries=HYPER_PARAMETERS_MAX,
        key_pattern=re.compile(rf".{{1,{HYPER_PARAMETER_NAME_MAX}}}", re.DOTALL),
        key_max=HYPER_PARAMETER_NAME_MAX,
        value_max=HYPER_PARAMETER_VALUE_MAX,
    )
    influence = config.body.get("rankingInfluence")
    if influence is not None:
        if not isinstance(influence, dict):
            raise InvalidInputException("batchInferenceJobConfig.rankingInfluence must be an object")
        for kind, weight in influence.items():
            if kind not in RANKING_INFLUENCE_TYPES:
                raise InvalidInputException(
                    f"batchInferenceJobConfig.rankingInfluence key {kind[:60]!r} "
                    "must be POPULARITY or FRESHNESS"
                )
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
                raise InvalidInputException(
                    f"batchInferenceJobConfig.rankingInfluence.{kind} must be a number between 0 and 1"
                )
    # Exact scores are the point of this service: exploration and influence would change them.
    if exploration:
        raise InvalidInputException(
            "batchInferenceJobConfig.itemExplorationConfig is not supported: scores are exact, not explored"
        )
    if influence:
        raise InvalidInputException(
            "batchInferenceJobConfig.rankingInfluence is not supported by this deployment"
        )
    return dict(raw)


def _tags(fields: _Fields) -> None:
    tags = fields.body.get("tags")
    if tags is None:
        return
    if not isinstance(tags, list):
        raise InvalidInputException("tags must be a list")
    if len(tags) > TAGS_MAX:
        raise TooManyTagsException(f"tags may have at most {TAGS_MAX} entries")
    for i, raw in enumerate(tags):
        tag = _Fields(raw, f"tags[{i}].", frozenset({"tagKey", "tagValue"}))
        tag.string("tagKey", max_len=TAG_KEY_MAX, min_len=1, required=True, pattern=TAG_TEXT)
        tag.string("tagValue", max_len=TAG_VALUE_MAX, required=True, pattern=TAG_TEXT)


@dataclass(frozen=True, slots=True)
class CreateJobRequest:
    job_name: str
    solution_version_arn: str
    filter_arn: str | None
    num_results: int
    role_arn: str
    input_path: S3Path
    output_path: S3Path
    output_kms_key_arn: str | None
    #: What Describe gives back, as the caller sent it.
    job_input: dict[str, Any]
    job_output: dict[str, Any]
    config: dict[str, Any]
    mode: str

    FIELDS = frozenset(
        {
            "jobName",
            "solutionVersionArn",
            "filterArn",
            "numResults",
            "jobInput",
            "jobOutput",
            "roleArn",
            "batchInferenceJobConfig",
            "tags",
            "batchInferenceJobMode",
            "themeGenerationConfig",
        }
    )

    @classmethod
    def parse(cls, body: Any) -> CreateJobRequest:
        fields = _Fields(body, "", cls.FIELDS)
        job_name = fields.string("jobName", max_len=NAME_MAX, min_len=1, required=True, pattern=NAME_PATTERN)
        solution_version_arn = fields.arn("solutionVersionArn", required=True)
        filter_arn = fields.arn("filterArn")
        num_results = fields.integer("numResults", minimum=1, maximum=NUM_RESULTS_MAX)
        role_arn = fields.string("roleArn", max_len=ROLE_ARN_MAX, required=True, pattern=ROLE_ARN)
        input_path, _, job_input = _s3_data_config(fields, "jobInput")
        output_path, output_kms, job_output = _s3_data_config(fields, "jobOutput")
        config = _config(fields)
        _tags(fields)
        mode = fields.string("batchInferenceJobMode", max_len=32) or "BATCH_INFERENCE"
        if mode not in JOB_MODES:
            raise InvalidInputException("batchInferenceJobMode must be BATCH_INFERENCE or THEME_GENERATION")
        if mode == "THEME_GENERATION" or fields.body.get("themeGenerationConfig") is not None:
            raise InvalidInputException("THEME_GENERATION batch jobs are not supported by this deployment")
        if not output_path.is_prefix:
            # Outputs are <input-name>.out files under a folder.
            output_path = S3Path(output_path.bucket, output_path.key + "/")
        if filter_arn is not None:
            parse_arn(filter_arn, "filterArn", "filter")
        assert job_name is not None
        assert solution_version_arn is not None
        assert role_arn is not None
        check_name(job_name, "jobName")
        return cls(
            job_name=job_name,
            solution_version_arn=solution_version_arn,
            filter_arn=filter_arn,
            num_results=NUM_RESULTS_DEFAULT if num_results is None else num_results,
            role_arn=role_arn,
            input_path=input_path,
            output_path=output_path,
            output_kms_key_arn=output_kms,
            job_input=job_input,
            job_output=job_output,
            config=config,
            mode=mode,
        )


def parse_describe(body: Any) -> str:
    fields = _Fields(body, "", frozenset({"batchInferenceJobArn"}))
    arn = fields.arn("batchInferenceJobArn", required=True)
    assert arn is not None
    return arn


@dataclass(frozen=True, slots=True)
class ListJobsRequest:
    solution_version_arn: str | None
    next_token: str | None
    max_results: int

    @classmethod
    def parse(cls, body: Any) -> ListJobsRequest:
        fields = _Fields(body, "", frozenset({"solutionVersionArn", "nextToken", "maxResults"}))
        max_results = fields.integer("maxResults", minimum=1, maximum=LIST_MAX_RESULTS)
        next_token = fields.string("nextToken", max_len=NEXT_TOKEN_MAX)
        if next_token is not None and not next_token.isascii():
            raise InvalidInputException("nextToken must be ASCII")
        return cls(
            solution_version_arn=fields.arn("solutionVersionArn"),
            next_token=next_token or None,
            max_results=LIST_MAX_RESULTS if max_results is None else max_results,
        )
