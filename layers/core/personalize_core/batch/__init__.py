"""Batch inference jobs, executed by SQS-driven workers (the control-plane side is
``personalize_core.control.batch_jobs``).

    jobs.py        job records in DynamoDB (the only module touching the table)
    queue.py       plan / shard messages on the shard queue
    storage.py     the caller's S3 data, with the job role's credentials (STS AssumeRole)
    sharding.py    byte-range shards of JSON Lines, without a planning pass over the data
    inference.py   a shard's lines answered by the serving recipes (one batched fast path)
    worker.py      plan, score a shard, assemble ``<input-name>.out`` (idempotent throughout)

``get_worker()`` is the worker function's logic; it builds its AWS clients lazily, from settings.py.
"""

from __future__ import annotations

from functools import cache

from personalize_core.batch.jobs import Job, JobsTable
from personalize_core.batch.queue import ShardQueue
from personalize_core.batch.storage import JobStorage, assume_role_storage
from personalize_core.batch.worker import BatchWorker, Models
from personalize_core.modelstore.store import get_store
from personalize_core.serving.filter_store import filter_store_for
from personalize_core.settings import get_settings

__all__ = ["BatchWorker", "get_worker"]


def job_storage(job: Job) -> JobStorage:
    """The job's S3 access, as its role (output encrypted with its KMS key, when it names one)."""
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
        storage=job_storage,
        models=Models(manifest=store.manifest, version=store.version, filter=filter_store_for(store).get),
        shard_bytes=settings.batch_shard_bytes,
        max_receives=settings.batch_max_receives,
    )
