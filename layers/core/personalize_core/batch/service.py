"""Create / Describe / List batch inference jobs: the control-plane side of batch inference.

Create validates the request, checks the solution version exists, records the job
(CREATE PENDING) and queues its ``plan`` message; everything that touches the caller's data
happens in the worker, with the job role's credentials.

No job stays unfinished forever: Describe and List mark a job whose record has not changed for
``stall_timeout`` seconds (settings.batch_stall_timeout_seconds) CREATE FAILED with a reason. The
check is lazy (no scheduler to run or pay for) and conditional on the record being the one read,
so a shard finishing at that moment wins and the job carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..artifacts import Manifest
from ..errors import ArtifactError, PersonalizeError, ResourceNotFoundException
from ..names import make_arn, parse_arn
from ..observability import logger
from .jobs import Job, JobsTable, JobStatus
from .queue import Message, ShardQueue
from .validation import CreateJobRequest, ListJobsRequest, parse_describe


class BatchJobs:
    def __init__(
        self,
        table: JobsTable,
        queue: ShardQueue,
        manifest: Callable[[str, str], Manifest],
        region: str,
        filter: Callable[[str], object] | None = None,
        account: str = "",
        clock: Callable[[], float] = time.time,
        stall_timeout: float = float("inf"),
    ) -> None:
        self.table = table
        self.queue = queue
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
        try:
            manifest = self.manifest(*version.path)
        except ArtifactError:
            raise ResourceNotFoundException(
                f"Solution version {request.solution_version_arn} does not exist"
            ) from None
        if manifest.solution_version_arn != request.solution_version_arn:
            raise ResourceNotFoundException(f"Solution version {request.solution_version_arn} does not exist")
        if request.filter_arn is not None and self.filter is not None:
            self.filter(request.filter_arn)
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
        jobs, token = self.table.list(request.solution_version_arn, request.max_results, request.next_token)
        jobs = [self._expire_if_stalled(job) for job in jobs]
        answer: dict[str, Any] = {"batchInferenceJobs": [job.summary() for job in jobs]}
        if token:
            answer["nextToken"] = token
        return answer
