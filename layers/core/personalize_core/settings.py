"""Every setting of the functions: the one module that reads the environment.

``get_settings()`` and ``get_observability()`` read it once per process (the template sets these
variables). Two kinds of value change while a process lives and are read on each use instead:
the invocation's X-Ray trace header, and the credentials Lambda refreshes (a SnapStart restore
brings new ones).
"""

from __future__ import annotations

import os
from functools import cache
from typing import NamedTuple


class Settings(NamedTuple):
    model_bucket: str
    #: How long a warm function trusts a campaign pointer before reading it again.
    campaign_cache_ttl_seconds: float
    #: How many solution versions a warm function keeps loaded (the ones campaigns point to win).
    max_loaded_versions: int
    region: str
    #: S3 reads of the model store: retried with exponential backoff (botocore's standard mode).
    s3_max_attempts: int
    s3_connect_timeout_seconds: float
    s3_read_timeout_seconds: float
    #: Largest request body accepted. Personalize's own limits make every valid request far
    #: smaller (500 ids of 256 characters, 150 context values of 1000...); parsing stops here.
    max_request_bytes: int
    #: Campaign ARNs a function loads during its init phase (SnapStart snapshots them loaded).
    preload_campaigns: tuple[str, ...] = ()
    #: Batch inference: the DynamoDB table of job records and the SQS queue of plan/shard messages.
    jobs_table: str = ""
    shard_queue_url: str = ""
    #: Input bytes per shard (one worker invocation scores one shard; ~10k users a shard by default).
    batch_shard_bytes: int = 256 * 1024
    #: A shard message received this many times fails its job instead of going back to the queue
    #: (the queue's redrive maxReceiveCount must not be lower, or the DLQ would take it first).
    batch_max_receives: int = 3
    #: The account in job ARNs; empty: the solution version's account.
    account_id: str = ""
    #: A job whose record has not changed for this long (no shard done, not planned) is marked
    #: CREATE FAILED when it is next described or listed. The default outlasts the shard queue's
    #: last redelivery (VisibilityTimeout 5400 s x BATCH_MAX_RECEIVES 3) with an hour to spare, so
    #: only a job whose messages are gone (dead-lettered, workers killed every time) ends this way.
    batch_stall_timeout_seconds: float = 6 * 3600.0
    #: S3 endpoint of the serving path's reader (the local runtime and tests); empty: AWS's own.
    s3_endpoint_url: str = ""
    #: Who may call the control plane (edge/authorization.py): "IAM_POLICIES", each operation
    #: authorised against the caller's IAM policies with Personalize's action names and ARNs; or
    #: "OPEN", anyone API Gateway lets through (the template's explicit ControlPlaneAccess=Open).
    control_plane_access: str = "IAM_POLICIES"
    #: How long an authorisation decision is reused for the same principal, action and resource.
    authorization_cache_seconds: float = 30.0
    #: The roles (name or path/name, IAM wildcards) a batch job may name; the template's
    #: BatchJobRoleNamePattern, which the worker's sts:AssumeRole grant is scoped to as well.
    batch_job_role_name_pattern: str = "*"
    #: PERSONALIZE_NATIVE_KERNELS=0 scores with numpy only (serving/native.py: for comparison).
    native_kernels: bool = True
    #: Training (personalize_core.training): the table of dataset groups, schemas, datasets, import
    #: jobs, solutions, solution versions and recommenders (control/records.py), and the queue of
    #: import and training messages the training function reads.
    records_table: str = ""
    training_queue_url: str = ""
    #: A training message received this many times fails its job (= TrainingQueue's maxReceiveCount).
    training_max_receives: int = 3
    #: Automatic training: EventBridge Scheduler schedules in this group send the training queue
    #: (``training_queue_arn``) a message with ``scheduler_role_arn``'s permission.
    schedule_group: str = ""
    scheduler_role_arn: str = ""
    training_queue_arn: str = ""
    #: Threads of a training run (implicit's ALS); 0: one per CPU the function has.
    training_threads: int = 0
    #: Events (personalize_core.events): the DynamoDB table of recent events, event trackers,
    #: recommendation records and PutItems/PutUsers metadata; empty: no events (serving reads none).
    events_table: str = ""
    #: The Firehose delivery stream every accepted event goes to (Personalize's Interactions format).
    events_delivery_stream: str = ""
    #: DynamoDB and Firehose endpoints of the JSON client (aws/json_client.py); empty: AWS's own.
    dynamodb_endpoint_url: str = ""
    firehose_endpoint_url: str = ""
    #: Attempts of one DynamoDB / Firehose call (backoff with jitter between them).
    events_max_attempts: int = 3
    events_connect_timeout_seconds: float = 2.0
    events_read_timeout_seconds: float = 5.0
    #: How long recent events, session links and recommendation records are kept after their last write.
    event_retention_days: float = 30.0
    #: How long a serving container trusts what it read of a dataset group (has it an event tracker?
    #: did PutItems/PutUsers change its metadata?). A new tracker turns ACTIVE only after this, so no
    #: container can still believe the group has none when its first event is acknowledged.
    event_group_ttl_seconds: float = 5.0
    #: Users a process keeps fetched from user pages (modelstore/users.py: ~0.7 KB each at d = 64),
    #: across the versions it has loaded; the least recently used go first.
    user_cache_size: int = 65_536
    #: Connections a batch of users' pages is fetched on (batch inference).
    user_fetch_threads: int = 16


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise RuntimeError(f"environment variable {name} must be a number, got {raw!r}") from None


@cache
def get_settings() -> Settings:
    return Settings(
        model_bucket=os.environ.get("MODEL_BUCKET", ""),
        campaign_cache_ttl_seconds=_float("CAMPAIGN_CACHE_TTL_SECONDS", 10.0),
        max_loaded_versions=int(_float("MAX_LOADED_VERSIONS", 4)),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        s3_max_attempts=int(_float("S3_MAX_ATTEMPTS", 5)),
        s3_connect_timeout_seconds=_float("S3_CONNECT_TIMEOUT_SECONDS", 3),
        s3_read_timeout_seconds=_float("S3_READ_TIMEOUT_SECONDS", 20),
        max_request_bytes=int(_float("MAX_REQUEST_BYTES", 1024 * 1024)),
        preload_campaigns=tuple(
            arn.strip() for arn in os.environ.get("PRELOAD_CAMPAIGNS", "").split(",") if arn.strip()
        ),
        jobs_table=os.environ.get("JOBS_TABLE", ""),
        shard_queue_url=os.environ.get("SHARD_QUEUE_URL", ""),
        batch_shard_bytes=max(1, int(_float("BATCH_SHARD_BYTES", 256 * 1024))),
        batch_max_receives=max(1, int(_float("BATCH_MAX_RECEIVES", 3))),
        account_id=os.environ.get("ACCOUNT_ID", ""),
        batch_stall_timeout_seconds=_float("BATCH_STALL_TIMEOUT_SECONDS", 6 * 3600.0),
        s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", ""),
        control_plane_access=os.environ.get("CONTROL_PLANE_ACCESS", "IAM_POLICIES").strip().upper(),
        authorization_cache_seconds=_float("AUTHORIZATION_CACHE_SECONDS", 30.0),
        batch_job_role_name_pattern=os.environ.get("BATCH_JOB_ROLE_NAME_PATTERN") or "*",
        native_kernels=os.environ.get(NATIVE_KERNELS_VARIABLE, "1") != "0",
        records_table=os.environ.get("RECORDS_TABLE", ""),
        training_queue_url=os.environ.get("TRAINING_QUEUE_URL", ""),
        training_max_receives=max(1, int(_float("TRAINING_MAX_RECEIVES", 3))),
        schedule_group=os.environ.get("SCHEDULE_GROUP", ""),
        scheduler_role_arn=os.environ.get("SCHEDULER_ROLE_ARN", ""),
        training_queue_arn=os.environ.get("TRAINING_QUEUE_ARN", ""),
        training_threads=max(0, int(_float("TRAINING_THREADS", 0))),
        events_table=os.environ.get("EVENTS_TABLE", ""),
        events_delivery_stream=os.environ.get("EVENTS_DELIVERY_STREAM", ""),
        dynamodb_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        or os.environ.get("AWS_ENDPOINT_URL", ""),
        firehose_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_FIREHOSE")
        or os.environ.get("AWS_ENDPOINT_URL", ""),
        events_max_attempts=max(1, int(_float("EVENTS_MAX_ATTEMPTS", 3))),
        events_connect_timeout_seconds=_float("EVENTS_CONNECT_TIMEOUT_SECONDS", 2.0),
        events_read_timeout_seconds=_float("EVENTS_READ_TIMEOUT_SECONDS", 5.0),
        event_retention_days=_float("EVENT_RETENTION_DAYS", 30.0),
        event_group_ttl_seconds=_float("EVENT_GROUP_TTL_SECONDS", 5.0),
        user_cache_size=max(1, int(_float("USER_CACHE_SIZE", 65_536))),
        user_fetch_threads=max(1, int(_float("USER_FETCH_THREADS", 16))),
    )


#: The variable that switches the compiled selection off (serving/native.py).
NATIVE_KERNELS_VARIABLE = "PERSONALIZE_NATIVE_KERNELS"
_TRUE = ("1", "true", "yes", "on")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in _TRUE


class Observability(NamedTuple):
    """Powertools' variables, which observability.py honours as Powertools does."""

    service: str
    metrics_namespace: str
    log_level: str
    metrics_disabled: bool
    #: Tracing runs only inside Lambda (not SAM local) and unless POWERTOOLS_TRACE_DISABLED is set.
    tracing: bool


@cache
def get_observability() -> Observability:
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")
    return Observability(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "service_undefined",
        metrics_namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "LambdaPersonalize",
        log_level=os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO",
        metrics_disabled=_flag("POWERTOOLS_METRICS_DISABLED"),
        tracing=in_lambda and not _flag("POWERTOOLS_TRACE_DISABLED"),
    )


def trace_header() -> str:
    """The current invocation's X-Ray trace header (Lambda sets it per invocation)."""
    return os.environ.get("_X_AMZN_TRACE_ID", "")


def environment_credentials() -> tuple[str, str, str | None] | None:
    """(access key, secret key, session token) from the environment, as Lambda provides them now."""
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (access_key and secret_key):
        return None
    return access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None
