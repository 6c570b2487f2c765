"""The training function's logic: one message of the training queue at a time.

    import      CREATE PENDING -> CREATE IN_PROGRESS -> ACTIVE | CREATE FAILED (the row and column)
    train       CREATE PENDING -> CREATE IN_PROGRESS -> ACTIVE | CREATE FAILED
                          \\-> CREATE STOPPING -> CREATE STOPPED (StopSolutionVersionCreation)
    autotrain   a new version of the solution (trainingType AUTOMATIC), queued as ``train``

Every status change is conditional (control/records.py), so a message delivered twice does its
work once, and a version stopped while it trains is never published: the record goes ACTIVE
first (conditionally, carrying its manifest), then the manifest is written. A retried message
that finds an ACTIVE version without its manifest writes it from the record. Faults that a retry
may fix go back to the queue; on the last receive (``max_receives``) the record fails instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from personalize_core.arns import parse_arn
from personalize_core.batch.storage import JobStorage, StorageError, assume_role_storage, parse_s3_path
from personalize_core.control.campaigns import sync_campaigns
from personalize_core.control.records import (
    ACTIVE,
    CREATE_FAILED,
    CREATE_IN_PROGRESS,
    CREATE_PENDING,
    CREATE_STOPPED,
    CREATE_STOPPING,
    UNFINISHED,
    Record,
)
from personalize_core.control.solution_versions import new_version
from personalize_core.control.workspace import (
    DATASET,
    IMPORT_JOB,
    RECOMMENDER,
    SCHEMA,
    SOLUTION,
    SOLUTION_VERSION,
    Workspace,
    get_workspace,
)
from personalize_core.datasets.data import import_key
from personalize_core.datasets.imports import ImportFailed, import_data
from personalize_core.datasets.schema import DatasetType, parse_schema
from personalize_core.errors import PersonalizeError
from personalize_core.modelstore.bucket_records import RecommenderPointer
from personalize_core.modelstore.layout import Manifest, Recipe, version_prefix
from personalize_core.modelstore.page_layout import USER_PAGES_FOLDER
from personalize_core.modelstore.writer import delete_files, put_recommender, upload_files, write_manifest
from personalize_core.observability import logger
from personalize_core.settings import get_settings
from personalize_core.training.config import training_config
from personalize_core.training.inputs import load_training_input
from personalize_core.training.messages import TrainingMessage
from personalize_core.training.trainer import Trained, TrainingFailed, TrainingStopped, train

Storage = Callable[[str, str], JobStorage]


class TrainingWorker:
    def __init__(
        self,
        ws: Workspace,
        storage: Storage = assume_role_storage,
        max_receives: int = 3,
        threads: int = 0,
        trainer: Callable[..., Trained] = train,
    ) -> None:
        self.ws = ws
        self.storage = storage
        self.max_receives = max_receives
        self.threads = threads
        self.trainer = trainer

    def handle(self, body: str, receive_count: int = 1) -> None:
        try:
            message = TrainingMessage.from_json(body)
        except ValueError:
            logger.error("not a training message; dropped")  # retrying cannot make it one
            return
        last = receive_count >= self.max_receives
        match message.kind:
            case "import":
                self.run_import(message.arn, last)
            case "train":
                self.run_training(message.arn, last)
            case _:
                self.autotrain(message.arn)

    def _fail(self, record: Record, reason: str) -> None:
        logger.warning("training work failed", extra={"arn": record.arn, "reason": reason[:300]})
        self.ws.records.transition(
            record.arn, UNFINISHED, CREATE_FAILED, self.ws.now(), failure_reason=reason
        )

    # -- import jobs -------------------------------------------------------------------------------

    def run_import(self, arn: str, last: bool) -> None:
        ws = self.ws
        job = ws.records.get(arn, IMPORT_JOB)
        if job is None or job.status not in UNFINISHED:
            return  # gone, or done already (a repeated message)
        job = ws.records.transition(arn, UNFINISHED, CREATE_IN_PROGRESS, ws.now()) or job
        dataset = ws.records.get(job.parent_arn or "", DATASET)
        schema = ws.records.get(dataset.attributes["schemaArn"], SCHEMA) if dataset else None
        if dataset is None or schema is None:
            self._fail(job, "The dataset (or its schema) was deleted before the import ran")
            return
        kind = DatasetType(dataset.attributes["datasetType"])
        location = parse_s3_path(job.attributes["dataLocation"], "dataSource.dataLocation")
        try:
            storage = self.storage(job.attributes["roleArn"], f"import-{job.name}")
            data, rows = import_data(storage, location, parse_schema(schema.attributes["schema"]), kind)
        except ImportFailed as exc:
            self._fail(job, str(exc))
            return
        except StorageError as exc:
            if exc.permanent or last:
                self._fail(job, str(exc))
                return
            raise
        group = parse_arn(dataset.arn, "datasetArn", DATASET, parts=2).path[0]
        ws.bucket.upload(import_key(group, kind.value, job.name), data)
        mode = job.attributes["importMode"]
        for _ in range(10):  # the dataset's list of imports: a conditional read-modify-write
            current = ws.records.get(dataset.arn, DATASET)
            if current is None:
                self._fail(job, "The dataset was deleted while the import ran")
                return
            imports = (
                [] if mode == "FULL" else [i for i in current.attributes.get("imports", []) if i != job.name]
            )
            changed = current.with_attributes(imports=[*imports, job.name], lastImport=job.arn)
            if ws.records.replace(current, changed) is not None:
                break
        ws.records.transition(arn, (CREATE_IN_PROGRESS,), ACTIVE, ws.now(), attributes={"rows": rows})
        logger.info("dataset import finished", extra={"arn": arn, "rows": rows})

    # -- solution versions -------------------------------------------------------------------------

    def run_training(self, arn: str, last: bool) -> None:
        ws = self.ws
        version = ws.records.get(arn, SOLUTION_VERSION)
        if version is None:
            return
        if version.status == ACTIVE:
            self._publish(version)  # a repeated message after a crash between ACTIVE and the manifest
            return
        if version.status == CREATE_STOPPING:
            ws.records.transition(arn, (CREATE_STOPPING,), CREATE_STOPPED, ws.now())
            return
        if version.status not in UNFINISHED:
            return
        version = ws.records.transition(arn, UNFINISHED, CREATE_IN_PROGRESS, ws.now()) or version
        recommender = version.attributes.get("recommenderArn")
        if recommender:
            ws.records.transition(recommender, (CREATE_PENDING,), CREATE_IN_PROGRESS, ws.now())

        def checkpoint() -> None:
            current = ws.records.get(arn, SOLUTION_VERSION)
            if current is None or current.status != CREATE_IN_PROGRESS:
                raise TrainingStopped(arn)

        solution, name = parse_arn(arn, "solutionVersionArn", "solution", parts=2).path
        attributes = version.attributes
        prepared = None
        try:
            config = training_config(attributes.get("solutionConfig"), attributes.get("eventType"))
            data = load_training_input(ws.bucket, ws.records, attributes["datasetGroupArn"], ws.events)
            started = time.perf_counter()
            trained = self.trainer(
                data,
                config,
                Recipe(attributes["recipe"]),
                solution=solution,
                version=name,
                region=ws.region,
                account=ws.account,
                dataset_group_arn=attributes["datasetGroupArn"],
                threads=self.threads,
                checkpoint=checkpoint,
            )
            prepared = trained.prepared
            upload_files(ws.bucket, prepared)
            checkpoint()
        except TrainingStopped:
            self._stopped(arn, prepared)
            return
        except (TrainingFailed, PersonalizeError) as exc:
            self._fail(version, getattr(exc, "message", str(exc)))
            self._fail_recommender(recommender, getattr(exc, "message", str(exc)))
            return
        except Exception as exc:
            if not last:
                raise  # back to the queue: the next receive trains it again
            logger.exception("training failed", extra={"arn": arn})
            self._fail(version, f"Training failed: {exc}"[:1000])
            self._fail_recommender(recommender, f"Training failed: {exc}"[:1000])
            return
        done = ws.records.transition(
            arn,
            (CREATE_IN_PROGRESS,),
            ACTIVE,
            ws.now(),
            attributes={
                "metrics": trained.metrics,
                "popularityBaselineMetrics": trained.baseline,
                # RELATED_ITEMS: how each way of relating items measured (the better one serves)
                **({"relatedItemsCompared": dict(trained.compared)} if trained.compared else {}),
                "interactions": trained.interactions,
                "trainingSeconds": round(time.perf_counter() - started, 3),
                "steps": trained.seconds,
                "manifest": prepared.manifest.to_json(),
            },
        )
        if done is None:
            self._stopped(arn, prepared)
            return
        self._publish(done)

    def _stopped(self, arn: str, prepared: Any) -> None:
        if prepared is not None:
            delete_files(self.ws.bucket, prepared)
        self.ws.records.transition(arn, (CREATE_STOPPING, CREATE_IN_PROGRESS), CREATE_STOPPED, self.ws.now())
        logger.info("solution version stopped", extra={"arn": arn})

    def _fail_recommender(self, arn: str | None, reason: str) -> None:
        if arn:
            self.ws.records.transition(arn, UNFINISHED, CREATE_FAILED, self.ws.now(), failure_reason=reason)

    def _publish(self, version: Record) -> None:
        """The ACTIVE version's manifest, then what follows it: a recommender's pointer, and
        campaigns that sync with their solution's latest version (once its files are checked)."""
        ws = self.ws
        manifest = Manifest.from_json(version.attributes["manifest"])
        write_manifest(ws.bucket, manifest)
        recommender_arn = version.attributes.get("recommenderArn")
        if recommender_arn:
            recommender = ws.records.get(recommender_arn, RECOMMENDER)
            if recommender is not None:
                now = ws.now()
                put_recommender(
                    ws.bucket,
                    RecommenderPointer(
                        recommender.arn,
                        recommender.name,
                        manifest.solution_version_arn,
                        manifest.solution,
                        manifest.version,
                        True,
                        recommender.created_at,
                        now,
                    ),
                )
                ws.records.transition(
                    recommender.arn,
                    UNFINISHED,
                    ACTIVE,
                    now,
                    attributes={"metrics": version.attributes.get("metrics", {})},
                )
        if self._complete(manifest):
            moved = sync_campaigns(ws.bucket, manifest)
            if moved:
                logger.info(
                    "campaigns moved to the latest version", extra={"campaigns": moved, "arn": version.arn}
                )

    def _complete(self, manifest: Manifest) -> bool:
        """Every file the manifest lists is in the bucket with its size (the check before a
        campaign follows the version by itself)."""
        prefix = version_prefix(manifest.solution, manifest.version)
        sizes = {}
        paginator = self.ws.bucket.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.ws.bucket.bucket, Prefix=prefix):
            sizes.update({o["Key"][len(prefix) :]: o["Size"] for o in page.get("Contents", [])})
        missing = [n for n, entry in manifest.files.items() if sizes.get(n) != entry.size]
        pages = manifest.user_pages
        if pages is not None:  # the user pages, by their count and total size (the index has each)
            found = [size for name, size in sizes.items() if name.startswith(USER_PAGES_FOLDER)]
            if len(found) != pages.files or sum(found) != pages.size:
                missing.append(USER_PAGES_FOLDER)
        if missing:
            logger.error("a version's files are incomplete; campaigns stay", extra={"missing": missing[:5]})
        return not missing

    # -- automatic training ------------------------------------------------------------------------

    def autotrain(self, solution_arn: str) -> None:
        solution = self.ws.records.get(solution_arn, SOLUTION)
        if solution is None or not solution.attributes.get("performAutoTraining"):
            logger.warning(
                "automatic training of a solution that is gone or has it off", extra={"arn": solution_arn}
            )
            return
        try:
            version = new_version(self.ws, solution, training_type="AUTOMATIC")
        except PersonalizeError as exc:
            # No data yet, or a version in training: this run is skipped, the next one tries again.
            logger.warning("automatic training skipped", extra={"arn": solution_arn, "reason": exc.message})
            return
        logger.info("automatic training started", extra={"arn": version.arn})


@cache
def get_training_worker() -> TrainingWorker:
    settings = get_settings()
    return TrainingWorker(
        get_workspace(), max_receives=settings.training_max_receives, threads=settings.training_threads
    )
