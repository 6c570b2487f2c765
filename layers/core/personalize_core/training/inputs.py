"""Where a training run's data comes from: the dataset group's datasets, read back from the model bucket.

Interactions come from ``InteractionSource``s, merged. Today there is one, the Interactions
dataset's imports (``ImportedInteractions``). The seam for the second: events recorded by the
events API (PutEvents -> Firehose -> files in S3 in Personalize's Interactions format: USER_ID,
ITEM_ID, TIMESTAMP, EVENT_TYPE, EVENT_VALUE, ...) become a source that reads those files since the
last version and returns them as ``Interactions`` (``datasets.imports.read_interactions`` already
checks and encodes rows of that format); ``interaction_sources`` then lists it beside the imports.
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
from personalize_core.modelstore.bucket import ModelBucket
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


def interaction_sources(bucket: ModelBucket, datasets: dict[str, Record]) -> list[InteractionSource]:
    """Every source of a dataset group's interactions (recorded events join here)."""
    interactions = datasets.get(DatasetType.INTERACTIONS.value)
    return [ImportedInteractions(bucket, interactions)] if interactions is not None else []


def _rows(
    bucket: ModelBucket, dataset: Record | None, kind: DatasetType
) -> tuple[list[str], dict[str, list[str]]] | None:
    if dataset is None or not dataset.attributes.get("imports"):
        return None
    group = parse_arn(dataset.arn, "datasetArn", "dataset", parts=2).path[0]
    parts = (bucket.read(import_key(group, kind.value, job)) for job in dataset.attributes["imports"])
    return merge_rows(parts, "ITEM_ID" if kind is DatasetType.ITEMS else "USER_ID")


def load_training_input(bucket: ModelBucket, records: RecordsTable, dataset_group_arn: str) -> TrainingInput:
    group = parse_arn(dataset_group_arn, "datasetGroupArn", "dataset-group")
    datasets = {}
    for kind in DatasetType:
        arn = str(make_arn(group.region, group.account, "dataset", group.path[0], kind.value))
        record = records.get(arn, "dataset")
        if record is not None:
            datasets[kind.value] = record
    found = [i for i in (source.read() for source in interaction_sources(bucket, datasets)) if i is not None]
    if not found:
        raise TrainingFailed(f"Dataset group {dataset_group_arn} has no imported Interactions data")
    return TrainingInput(
        merge_interactions(found),
        items=_rows(bucket, datasets.get(DatasetType.ITEMS.value), DatasetType.ITEMS),
        users=_rows(bucket, datasets.get(DatasetType.USERS.value), DatasetType.USERS),
    )
