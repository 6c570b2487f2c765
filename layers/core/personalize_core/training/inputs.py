"""Where a training run's data comes from: the dataset group's datasets, read back from the model bucket.

Interactions come from ``InteractionSource``s, merged: the Interactions dataset's imports
(``ImportedInteractions``) and the events PutEvents recorded (``recorded_events.RecordedEvents``:
the Firehose files since the last training, and those before, compacted). Items and users are the
imports' rows with PutItems / PutUsers records over them (a record replaces its row, as in
Personalize).
"""

from __future__ import annotations

from typing import Protocol

from personalize_core.arns import make_arn, parse_arn
from personalize_core.control.records import Record, RecordsTable
from personalize_core.datasets.data import (
    Interactions,
    decode_interactions,
    import_key,
    merge_interactions,
    merge_rows,
)
from personalize_core.datasets.schema import DatasetType
from personalize_core.events.table import EventsTable
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.training.recorded_events import RecordedEvents
from personalize_core.training.trainer import TrainingFailed, TrainingInput


class InteractionSource(Protocol):
    def read(self) -> Interactions | None:
        """This source's interactions, or None when it has none."""
        ...


class ImportedInteractions:
    """The Interactions dataset's current imports (FULL replaced, INCREMENTAL added)."""

    def __init__(self, bucket: ModelBucket, dataset: Record) -> None:
        self.bucket = bucket
        self.dataset = dataset

    def read(self) -> Interactions | None:
        group = parse_arn(self.dataset.arn, "datasetArn", "dataset", parts=2).path[0]
        jobs = self.dataset.attributes.get("imports") or []
        if not jobs:
            return None
        return merge_interactions(
            decode_interactions(self.bucket.read(import_key(group, DatasetType.INTERACTIONS.value, job)))
            for job in jobs
        )


def interaction_sources(
    bucket: ModelBucket, records: RecordsTable, group_arn: str, datasets: dict[str, Record]
) -> list[InteractionSource]:
    """Every source of a dataset group's interactions: its imports, and its recorded events."""
    interactions = datasets.get(DatasetType.INTERACTIONS.value)
    imported: list[InteractionSource] = [ImportedInteractions(bucket, interactions)] if interactions else []
    return [*imported, RecordedEvents(bucket, records, group_arn, interactions)]


def _rows(
    bucket: ModelBucket, dataset: Record | None, kind: DatasetType, put: dict[str, dict[str, str]]
) -> tuple[list[str], dict[str, list[str]]] | None:
    """The dataset's rows; PutItems / PutUsers records (``put``: id -> field -> value) replace theirs."""
    imported = None
    if dataset is not None and dataset.attributes.get("imports"):
        group = parse_arn(dataset.arn, "datasetArn", "dataset", parts=2).path[0]
        parts = (bucket.read(import_key(group, kind.value, job)) for job in dataset.attributes["imports"])
        imported = merge_rows(parts, kind.id_field)
    if not put:
        return imported
    ids, columns = imported or ([], {})
    names = list(dict.fromkeys([*columns, *(name for fields in put.values() for name in fields)]))
    at = {record_id: row for row, record_id in enumerate(ids)}
    merged = {name: list(columns.get(name, [""] * len(ids))) for name in names}
    for record_id, fields in put.items():
        row = at.get(record_id)
        if row is None:
            row = at[record_id] = len(ids)
            ids = [*ids, record_id]
            for values in merged.values():
                values.append("")
        for name in names:
            merged[name][row] = fields.get(name, "")
    return ids, merged


def load_training_input(
    bucket: ModelBucket, records: RecordsTable, dataset_group_arn: str, events: EventsTable | None = None
) -> TrainingInput:
    group = parse_arn(dataset_group_arn, "datasetGroupArn", "dataset-group")
    datasets = {}
    for kind in DatasetType:
        arn = str(make_arn(group.region, group.account, "dataset", group.path[0], kind.value))
        record = records.get(arn, "dataset")
        if record is not None:
            datasets[kind.value] = record
    sources = interaction_sources(bucket, records, dataset_group_arn, datasets)
    found = [i for i in (source.read() for source in sources) if i is not None]
    if not found:
        raise TrainingFailed(f"Dataset group {dataset_group_arn} has no imported Interactions data")

    def put(kind: DatasetType) -> dict[str, dict[str, str]]:
        return events.metadata(group.path[0], kind.value) if events is not None else {}

    return TrainingInput(
        merge_interactions(found),
        items=_rows(bucket, datasets.get(DatasetType.ITEMS.value), DatasetType.ITEMS, put(DatasetType.ITEMS)),
        users=_rows(bucket, datasets.get(DatasetType.USERS.value), DatasetType.USERS, put(DatasetType.USERS)),
    )
