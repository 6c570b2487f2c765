"""Batch inference jobs: Create / Describe / List on the control plane, executed by SQS-driven workers.

    validation.py  the three requests, every limit of the contract
    jobs.py        job records in DynamoDB (the only module touching the table), page tokens
    queue.py       plan / shard messages on the shard queue
    storage.py     the caller's S3 data, with the job role's credentials (STS AssumeRole)
    sharding.py    byte-range shards of JSON Lines, without a planning pass over the data
    inference.py   a shard's lines answered as the real-time API answers them
    worker.py      plan, score a shard, assemble ``<input-name>.out`` (idempotent throughout)
    service.py     the control-plane operations

``register(plane)`` adds the operations to the control plane; ``get_worker()`` is the worker
function's logic. Both build their AWS clients lazily, from settings.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from ..control_plane import ControlPlane
from ..filters import filter_store_for
from ..settings import get_settings
from ..store import get_store
from .jobs import Job, JobsTable
from .queue import ShardQueue
from .service import BatchJobs
from .storage import JobStorage, assume_role_storage
from .worker import BatchWorker, Models

__all__ = ["BatchJobs", "BatchWorker", "get_batch_jobs", "get_worker", "register"]


@cache
def get_batch_jobs() -> BatchJobs:
    settings = get_settings()
    return BatchJobs(
        JobsTable(settings.jobs_table),
        ShardQueue(settings.shard_queue_url),
        manifest=get_store().manifest,
        region=settings.region,
        filter=filter_store_for(get_store()).get,
        account=settings.account_id,
        stall_timeout=settings.batch_stall_timeout_seconds,
    )


def register(plane: ControlPlane, jobs: Callable[[], BatchJobs] = get_batch_jobs) -> None:
    """Add CreateBatchInferenceJob, DescribeBatchInferenceJob and ListBatchInferenceJobs to ``plane``."""
    plane.operation("CreateBatchInferenceJob")(lambda body: jobs().create(body))
    plane.operation("DescribeBatchInferenceJob")(lambda body: jobs().describe(body))
    plane.operation("ListBatchInferenceJobs")(lambda body: jobs().list(body))


def _job_storage(job: Job) -> JobStorage:
    return assume_role_storage(
        job.role_arn,
        f"batch-{job.name}",
        kms_key_arn=job.job_output["s3DataDestination"].get("kmsKeyArn"),
    )


@cache
def get_worker() -> BatchWorker:
    settings = get_settings()
    store = get_store()
    return BatchWorker(
        JobsTable(settings.jobs_table),
        ShardQueue(settings.shard_queue_url),
        storage=_job_storage,
        models=Models(manifest=store.manifest, version=store.version, filter=filter_store_for(store).get),
        shard_bytes=settings.batch_shard_bytes,
        max_receives=settings.batch_max_receives,
    )
