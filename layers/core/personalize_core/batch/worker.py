"""The batch worker's logic: plan a job, score a shard, and (last shard) assemble the outputs.

Exactly one output line per input line, though SQS delivers at least once and a worker can die
anywhere:
- a shard's answers are one part object, written with one PUT (all of it or nothing), and the
  same shard always writes the same part: a shard scored twice overwrites it with the same bytes;
- a shard is counted done in a DynamoDB *set* after its part exists: counting it twice is a no-op;
- the update that completes the set elects the finisher; the finisher concatenates the parts in
  shard order into ``<input-name>.out`` (PUT: the same bytes each time), and only then marks the
  job ACTIVE (conditional: once). A finisher that dies before that is run again by the shard's
  redelivery; one that arrives after the job is ACTIVE does nothing.
Failures that retrying cannot fix (missing input, no access, unknown model) fail the job with a
reason at once; other faults go back to the queue, and fail the job on the last attempt.
"""

from __future__ import annotations

import posixpath
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from personalize_core.arns import parse_arn
from personalize_core.batch.inference import Line, answer_lines, parse_line
from personalize_core.batch.jobs import InputFile, Job, JobsTable, JobStatus, Plan
from personalize_core.batch.queue import Message, ShardQueue
from personalize_core.batch.sharding import owned_lines, read_start, shard_count
from personalize_core.batch.storage import JobStorage, S3Path, StorageError, parse_s3_path
from personalize_core.errors import ArtifactError, InvalidInputException, ResourceNotFoundException
from personalize_core.modelstore.layout import Manifest
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.observability import logger
from personalize_core.serving.filter_store import CompiledFilter
from personalize_core.serving.live import get_live
from personalize_core.text import check_text

#: Where a job keeps its parts until the .out files are assembled (under its output path).
PARTS_FOLDER = ".batch-parts"
MAX_INPUT_FILES = 1000
#: The finisher keeps at most this much of an assembled ``.out`` in memory; the rest goes to /tmp,
#: so a worker's memory does not grow with the size of the job (tests/integration/test_batch_scale.py).
OUTPUT_SPOOL_BYTES = 1 << 20
#: Lines scored together (one matrix product): enough to amortise the call, few enough to stay small.
LINES_PER_BATCH = 1024


class JobFailure(Exception):
    """The job cannot succeed; the message is its failureReason."""


#: Errors that come from the job's own data, not from a fault: retrying cannot help.
PERMANENT_ERRORS = (UnicodeError, InvalidInputException)


def check_record(job: Job) -> None:
    """A job recorded before the edge checked Unicode may hold text with no UTF-8 form: it fails."""
    try:
        check_text({"jobInput": job.job_input, "jobOutput": job.job_output, "roleArn": job.role_arn})
    except InvalidInputException as exc:
        raise JobFailure(f"The job cannot run: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class Models:
    """How the worker reaches solution versions (the model bucket, with the service's own role)."""

    manifest: Callable[[str, str], Manifest]
    version: Callable[[str, str], SolutionVersionModel]
    #: A filter by ARN, compiled (raises ResourceNotFoundException when there is none).
    filter: Callable[[str], CompiledFilter]


def parts_prefix(job: Job) -> str:
    output = parse_s3_path(job.job_output["s3DataDestination"]["path"], "jobOutput")
    folder = output.key if output.is_prefix else output.key + "/"
    return f"{folder}{PARTS_FOLDER}/{job.name}/"


def part_key(job: Job, file_index: int, shard_index: int) -> str:
    return f"{parts_prefix(job)}{file_index:05d}-{shard_index:07d}.jsonl"


def output_key(input_path: S3Path, output_folder: str, key: str) -> str:
    """``<output path><input name>.out``; under a prefix, the input's path below it is kept."""
    relative = key[len(input_path.key) :] if input_path.is_prefix else posixpath.basename(key)
    return f"{output_folder}{relative}.out"


class BatchWorker:
    def __init__(
        self,
        table: JobsTable,
        queue: ShardQueue,
        storage: Callable[[Job], JobStorage],
        models: Models,
        shard_bytes: int,
        max_receives: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.queue = queue
        self.storage = storage
        self.models = models
        self.shard_bytes = shard_bytes
        self.max_receives = max_receives
        self.clock = clock

    def handle(self, body: str, receive_count: int) -> None:
        """Process one queue message. Raises to have it delivered again (a transient fault)."""
        try:
            message = Message.from_json(body)
        except ValueError:
            logger.error("dropping a message that is not a batch job message", extra={"body": body[:200]})
            return
        job = self.table.get(message.job_name)
        if job is None or job.status.is_final:
            return  # a job that is gone or has ended: nothing left to do
        try:
            check_record(job)
            if message.kind == "plan":
                self.plan(job)
            elif message.shard is not None:
                self.shard(job, message.shard)
        except JobFailure as failure:
            self._fail(job, str(failure))
        except StorageError as exc:
            if exc.permanent or receive_count >= self.max_receives:
                self._fail(job, str(exc))
            else:
                raise
        except PERMANENT_ERRORS as exc:  # the same input fails the same way every time
            logger.exception("batch job message failed for a permanent reason", extra={"job": job.name})
            self._fail(job, f"{message.kind} failed: {type(exc).__name__}: {exc}")
        except Exception as exc:
            if receive_count < self.max_receives:
                raise
            logger.exception("batch job message failed for the last time", extra={"job": job.name})
            self._fail(job, f"{message.kind} failed {receive_count} times: {type(exc).__name__}: {exc}")

    def _fail(self, job: Job, reason: str) -> None:
        logger.warning("batch inference job failed", extra={"job": job.name, "reason": reason})
        self.table.fail(job.name, reason, self.clock())

    # -- plan ------------------------------------------------------------------------------------

    def plan(self, job: Job) -> None:
        if job.status is JobStatus.PENDING:
            planned = self._make_plan(job)
            started = self.table.start(job, planned, self.clock())
            if started is None:  # planned twice at once: the other one's record wins
                started = self.table.get(job.name)
            if started is None or started.status is not JobStatus.IN_PROGRESS:
                return
            job = started
        if job.plan is None or job.status is not JobStatus.IN_PROGRESS:
            return
        # Sent again when the plan message is delivered again: a duplicate shard costs a little work.
        self.queue.send(
            [Message("shard", job.name, s) for s in job.plan.shard_ids if s not in job.shards_done]
        )
        logger.info("batch inference job planned", extra={"job": job.name, "shards": len(job.plan.shard_ids)})

    def _make_plan(self, job: Job) -> Plan:
        solution, version = self._version_of(job)
        try:
            self.models.manifest(solution, version)
        except ArtifactError as exc:
            raise JobFailure(f"Solution version {job.solution_version_arn} cannot be used: {exc}") from exc
        storage = self.storage(job)
        input_path = parse_s3_path(job.job_input["s3DataSource"]["path"], "jobInput")
        output_path = parse_s3_path(job.job_output["s3DataDestination"]["path"], "jobOutput")
        output_folder = output_path.key if output_path.is_prefix else output_path.key + "/"
        if input_path.is_prefix:
            listed = [
                (key, size, etag)
                for key, size, etag in storage.list_objects(input_path.bucket, input_path.key)
                if not key.endswith("/") and f"/{PARTS_FOLDER}/" not in f"/{key}"
            ]
            if not listed:
                raise JobFailure(f"The input location {input_path} holds no files")
            if len(listed) > MAX_INPUT_FILES:
                raise JobFailure(f"The input location {input_path} holds more than {MAX_INPUT_FILES} files")
        else:
            head = storage.head(input_path.bucket, input_path.key)
            if head is None:
                raise JobFailure(f"The input file {input_path} does not exist")
            listed = [(input_path.key, *head)]
        plan = Plan(
            input_bucket=input_path.bucket,
            output_bucket=output_path.bucket,
            files=tuple(
                InputFile(
                    key,
                    etag,
                    size,
                    output_key(input_path, output_folder, key),
                    shard_count(size, self.shard_bytes),
                )
                for key, size, etag in listed
            ),
            shard_bytes=self.shard_bytes,
        )
        # Written first: proves the output location is writable before any work is done.
        try:
            storage.put(plan.output_bucket, f"{parts_prefix(job)}plan.json", plan.to_json().encode())
        except StorageError as exc:
            raise JobFailure(f"Cannot write to the output location {output_path}: {exc}") from exc
        return plan

    @staticmethod
    def _version_of(job: Job) -> tuple[str, str]:
        arn = parse_arn(job.solution_version_arn, "solutionVersionArn", "solution", parts=2)
        return arn.path[0], arn.path[1]

    # -- shards ----------------------------------------------------------------------------------

    def shard(self, job: Job, shard: str) -> None:
        plan = job.plan
        if plan is None or job.status is not JobStatus.IN_PROGRESS or shard not in plan.shard_ids:
            logger.warning(
                "ignoring a shard message the job does not expect", extra={"job": job.name, "shard": shard}
            )
            return
        storage = self.storage(job)
        if shard not in job.shards_done:
            file_index, shard_index = (int(n) for n in shard.split(":"))
            part = self._score(job, storage, plan, plan.files[file_index], shard_index)
            storage.put(plan.output_bucket, part_key(job, file_index, shard_index), part)
        updated = self.table.mark_shard_done(job.name, shard, self.clock())
        if updated is not None and len(updated.shards_done) == len(plan.shard_ids):
            self.finish(updated, storage)

    def _score(self, job: Job, storage: JobStorage, plan: Plan, file: InputFile, shard_index: int) -> bytes:
        solution, version = self._version_of(job)
        try:
            model = self.models.version(solution, version)
        except ArtifactError as exc:
            raise JobFailure(f"Solution version {job.solution_version_arn} cannot be loaded: {exc}") from exc
        start = read_start(shard_index, plan.shard_bytes)
        # An empty file has no byte to read (S3 answers a range on it with 416): it has no lines.
        chunks = storage.read_from(plan.input_bucket, file.key, start, file.etag) if file.size else iter(())
        recipe = model.manifest.recipe
        job_filter = self._filter_of(job)
        # Answered LINES_PER_BATCH at a time: a shard's parsed lines never all live at once (a
        # shard of short lines holds ~10k of them), only its answers, as bytes.
        part = bytearray()
        lines: list[Line] = []
        try:
            for raw in owned_lines(chunks, shard_index, plan.shard_bytes):
                if not raw.strip():
                    continue  # blank lines are not records (a trailing newline, an empty line between)
                lines.append(parse_line(raw, recipe))
                if len(lines) == LINES_PER_BATCH:
                    part += self._answered(model, lines, job.num_results, job_filter)
                    lines = []
            part += self._answered(model, lines, job.num_results, job_filter)
        except ArtifactError as exc:  # a user page missing or corrupt: retrying will not fix it
            raise JobFailure(f"Solution version {job.solution_version_arn} cannot be used: {exc}") from exc
        return bytes(part)

    @staticmethod
    def _answered(
        model: SolutionVersionModel, lines: list[Line], k: int, job_filter: CompiledFilter | None
    ) -> bytes:
        users = [line.user_id for line in lines if line.user_id is not None and not line.error]
        answer_lines(model, lines, k, job_filter, get_live().read_many(model, users))
        return b"".join(line.to_json() + b"\n" for line in lines)

    def _filter_of(self, job: Job) -> CompiledFilter | None:
        if job.filter_arn is None:
            return None
        try:
            return self.models.filter(job.filter_arn)
        except ResourceNotFoundException as exc:  # deleted after the job was created
            raise JobFailure(exc.message) from exc

    # -- the finisher ----------------------------------------------------------------------------

    def finish(self, job: Job, storage: JobStorage) -> None:
        """Assemble every ``.out`` from its parts, in order, then mark the job ACTIVE. Idempotent."""
        plan = job.plan
        assert plan is not None
        for file_index, file in enumerate(plan.files):
            with tempfile.SpooledTemporaryFile(max_size=OUTPUT_SPOOL_BYTES) as out:
                for shard_index in range(file.shards):
                    part = storage.get(plan.output_bucket, part_key(job, file_index, shard_index))
                    if part is None:
                        current = self.table.get(job.name)
                        if current is not None and current.status.is_final:
                            return  # another finisher got there first (and removed the parts)
                        raise RuntimeError(f"part {file_index}:{shard_index} of {job.name} is missing")
                    out.write(part)
                out.seek(0)
                storage.put(plan.output_bucket, file.output_key, out)
        if self.table.finish(job.name, self.clock()) is None:
            return
        logger.info("batch inference job done", extra={"job": job.name, "files": len(plan.files)})
        parts = [part_key(job, f, s) for f, file in enumerate(plan.files) for s in range(file.shards)]
        try:
            storage.delete(plan.output_bucket, [*parts, f"{parts_prefix(job)}plan.json"])
        except StorageError as exc:  # the role may not grant s3:DeleteObject; the outputs are complete
            logger.warning("could not remove the job's parts", extra={"job": job.name, "reason": str(exc)})
