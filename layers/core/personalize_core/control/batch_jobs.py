"""CreateBatchInferenceJob, DescribeBatchInferenceJob, ListBatchInferenceJobs: the control-plane
side of batch inference.

Create validates the request against every limit of botocore's model, checks the solution version
exists, records the job (CREATE PENDING) and queues its ``plan`` message; everything that touches
the caller's data happens in the worker (personalize_core.batch), with the job role's credentials.

No job stays unfinished forever: Describe and List mark a job whose record has not changed for
``stall_timeout`` seconds (settings.batch_stall_timeout_seconds) CREATE FAILED with a reason. The
check is lazy (no scheduler to run or pay for) and conditional on the record being the one read,
so a shard finishing at that moment wins and the job carries on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from personalize_core.arns import NAME_MAX, NAME_PATTERN, check_name, make_arn, parse_arn
from personalize_core.batch.jobs import Job, JobsTable, JobStatus, is_list_position, list_position
from personalize_core.batch.queue import Message, ShardQueue
from personalize_core.batch.storage import S3Path, parse_s3_path
from personalize_core.control.filters import read_filter
from personalize_core.control.paging import NEXT_TOKEN_MAX, decode_token, encode_token, paged
from personalize_core.control.tags import check_tags
from personalize_core.edge.fields import Fields
from personalize_core.edge.requests import NUM_RESULTS_DEFAULT, NUM_RESULTS_MAX
from personalize_core.errors import InvalidInputException, PersonalizeError, ResourceNotFoundException
from personalize_core.modelstore.bucket import get_model_bucket
from personalize_core.modelstore.bucket_records import FilterRecord
from personalize_core.modelstore.layout import Manifest
from personalize_core.observability import logger
from personalize_core.settings import get_settings

S3_LOCATION_MAX = 256
S3_LOCATION = re.compile(r"(s3|http|https)://.+")
KMS_KEY_ARN = re.compile(r"arn:aws.*:kms:.*:[0-9]{12}:key/.*")
KMS_KEY_ARN_MAX = 2048
ROLE_ARN = re.compile(r"arn:([a-z\d-]+):iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
ROLE_ARN_MAX = 256
HYPER_PARAMETERS_MAX = 100
HYPER_PARAMETER_NAME_MAX = 256
HYPER_PARAMETER_VALUE_MAX = 1000
RANKING_INFLUENCE_TYPES = frozenset({"POPULARITY", "FRESHNESS"})
JOB_MODES = frozenset({"BATCH_INFERENCE", "THEME_GENERATION"})
LIST_MAX_RESULTS = 100


def _s3_data_config(fields: Fields, key: str) -> tuple[S3Path, str | None, dict[str, Any]]:
    container = fields.body.get(key)
    name = fields.name(key)
    if container is None:
        raise InvalidInputException(f"{name} is required")
    outer_key = "s3DataSource" if key == "jobInput" else "s3DataDestination"
    outer = Fields(container, f"{name}.", frozenset({outer_key}))
    if outer.body.get(outer_key) is None:
        raise InvalidInputException(f"{name}.{outer_key} is required")
    inner = Fields(outer.body[outer_key], f"{name}.{outer_key}.", frozenset({"path", "kmsKeyArn"}))
    path = inner.string("path", max_len=S3_LOCATION_MAX, required=True, pattern=S3_LOCATION)
    kms = inner.string("kmsKeyArn", max_len=KMS_KEY_ARN_MAX, pattern=KMS_KEY_ARN)
    assert path is not None
    parsed = parse_s3_path(path, inner.name("path"))
    given = {"path": path} | ({"kmsKeyArn": kms} if kms else {})
    return parsed, kms, {outer_key: given}


def _config(fields: Fields) -> dict[str, Any]:
    raw = fields.body.get("batchInferenceJobConfig")
    if raw is None:
        return {}
    config = Fields(raw, "batchInferenceJobConfig.", frozenset({"itemExplorationConfig", "rankingInfluence"}))
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
        fields = Fields(body, "", cls.FIELDS)
        job_name = fields.string("jobName", max_len=NAME_MAX, min_len=1, required=True, pattern=NAME_PATTERN)
        solution_version_arn = fields.arn("solutionVersionArn", required=True)
        filter_arn = fields.arn("filterArn")
        num_results = fields.integer("numResults", minimum=1, maximum=NUM_RESULTS_MAX)
        role_arn = fields.string("roleArn", max_len=ROLE_ARN_MAX, required=True, pattern=ROLE_ARN)
        input_path, _, job_input = _s3_data_config(fields, "jobInput")
        output_path, output_kms, job_output = _s3_data_config(fields, "jobOutput")
        config = _config(fields)
        check_tags(fields)
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
    fields = Fields(body, "", frozenset({"batchInferenceJobArn"}))
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
        fields = Fields(body, "", frozenset({"solutionVersionArn", "nextToken", "maxResults"}))
        max_results = fields.integer("maxResults", minimum=1, maximum=LIST_MAX_RESULTS)
        next_token = fields.string("nextToken", max_len=NEXT_TOKEN_MAX)
        if next_token is not None and not next_token.isascii():
            raise InvalidInputException("nextToken must be ASCII")
        return cls(
            solution_version_arn=fields.arn("solutionVersionArn"),
            next_token=next_token or None,
            max_results=LIST_MAX_RESULTS if max_results is None else max_results,
        )


def check_role(role_arn: str, pattern: str, account: str) -> None:
    """Refuse a roleArn the worker may not assume: a role of another account, or one whose
    (path and) name does not match BatchJobRoleNamePattern. The same rule as the worker's IAM grant
    (``role/${BatchJobRoleNamePattern}`` in the stack's account), checked here so that a job is
    refused at once, with the reason, locally (where nothing else checks it) as on AWS."""
    _, _, rest = role_arn.partition(":iam::")
    role_account, _, name = rest.partition(":role/")
    # IAM's wildcards in a resource ARN: * is any run of characters ("/" too), ? is one.
    expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if (account and role_account != account) or re.fullmatch(expression, name.lstrip("/")) is None:
        raise InvalidInputException(
            f"roleArn {role_arn} is not a role this stack's batch worker may assume: it takes roles of "
            f"account {account or role_account} matching BatchJobRoleNamePattern {pattern!r} (a stack "
            "parameter; see the README's batch section)"
        )


# -- the operations ----------------------------------------------------------------------


class BatchJobs:
    def __init__(
        self,
        table: JobsTable,
        queue: ShardQueue,
        manifest: Callable[[str], Manifest],
        region: str,
        filter: Callable[[str], FilterRecord] | None = None,
        account: str = "",
        clock: Callable[[], float] = time.time,
        stall_timeout: float = float("inf"),
        role_pattern: str = "*",
    ) -> None:
        self.table = table
        #: BatchJobRoleNamePattern: the roles the worker may assume (its IAM grant says the same).
        self.role_pattern = role_pattern
        self.queue = queue
        #: A solution version's manifest by ARN (ResourceNotFoundException if there is none).
        self.manifest = manifest
        #: Looks a filter up by ARN (ResourceNotFoundException if there is none).
        self.filter = filter
        self.region = region
        self.account = account
        self.clock = clock
        self.stall_timeout = stall_timeout

    def create(self, body: Any) -> dict[str, Any]:
        request = CreateJobRequest.parse(body)
        version = parse_arn(request.solution_version_arn, "solutionVersionArn", "solution", parts=2)
        check_role(request.role_arn, self.role_pattern, self.account or version.account)
        manifest = self.manifest(request.solution_version_arn)
        if request.filter_arn is not None and self.filter is not None:
            self.filter(request.filter_arn).check_applies_to(manifest, f"filterArn {request.filter_arn}")
        arn = make_arn(self.region, self.account or version.account, "batch-inference-job", request.job_name)
        now = round(self.clock(), 3)
        job = Job(
            name=request.job_name,
            arn=str(arn),
            solution_version_arn=request.solution_version_arn,
            role_arn=request.role_arn,
            num_results=request.num_results,
            job_input=request.job_input,
            job_output=request.job_output,
            config=request.config,
            mode=request.mode,
            status=JobStatus.PENDING,
            created_at=now,
            updated_at=now,
            filter_arn=request.filter_arn,
        )
        self.table.create(job)
        try:
            self.queue.send([Message("plan", job.name)])
        except Exception as exc:
            logger.exception("could not queue a batch inference job", extra={"job": job.name})
            self.table.fail(job.name, "The job could not be queued; create it again", self.clock())
            raise PersonalizeError("The job could not be queued; try again") from exc
        logger.info("batch inference job created", extra={"job": job.name})
        return {"batchInferenceJobArn": job.arn}

    def _job(self, arn: str) -> Job:
        name = parse_arn(arn, "batchInferenceJobArn", "batch-inference-job").path[0]
        job = self.table.get(name)
        if job is None or job.arn != arn:
            raise ResourceNotFoundException(f"Batch inference job {arn} does not exist")
        return self._expire_if_stalled(job)

    def _expire_if_stalled(self, job: Job) -> Job:
        now = self.clock()
        if job.status.is_final or now - job.updated_at <= self.stall_timeout:
            return job
        idle = round(now - job.updated_at)
        reason = (
            f"The job made no progress for {idle} seconds (more than the {self.stall_timeout:g} s "
            "allowed): its work was lost after repeated worker failures; create it again"
        )
        expired = self.table.expire(job, reason, now)
        if expired is None:  # it moved (or ended) since it was read: show it as it is now
            return self.table.get(job.name) or job
        logger.warning("batch inference job stalled", extra={"job": job.name, "idleSeconds": idle})
        return expired

    def describe(self, body: Any) -> dict[str, Any]:
        return {"batchInferenceJob": self._job(parse_describe(body)).describe()}

    def list(self, body: Any) -> dict[str, Any]:
        request = ListJobsRequest.parse(body)
        listing = request.solution_version_arn or ""
        after = None
        if request.next_token is not None:
            after = decode_token(request.next_token, listing, is_list_position)
        jobs, last = self.table.list(request.solution_version_arn, request.max_results, after)
        token = encode_token(listing, list_position(last)) if last is not None else None
        return paged("batchInferenceJobs", [self._expire_if_stalled(job).summary() for job in jobs], token)


@cache
def get_batch_jobs() -> BatchJobs:
    settings = get_settings()
    bucket = get_model_bucket()
    return BatchJobs(
        JobsTable(settings.jobs_table),
        ShardQueue(settings.shard_queue_url),
        manifest=bucket.manifest,
        region=settings.region,
        filter=lambda arn: read_filter(bucket, arn),
        account=settings.account_id,
        stall_timeout=settings.batch_stall_timeout_seconds,
        role_pattern=settings.batch_job_role_name_pattern,
    )


OPERATIONS = {
    "CreateBatchInferenceJob": BatchJobs.create,
    "DescribeBatchInferenceJob": BatchJobs.describe,
    "ListBatchInferenceJobs": BatchJobs.list,
}
