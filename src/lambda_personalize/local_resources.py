"""Create the template's buckets, tables, queues, schedule groups and Firehose delivery streams in
the embedded AWS from their own Properties.

Each CloudFormation property is translated into the API call that realises it, so what runs
locally is what the template declares. A property the translation does not know is reported
(never silently dropped): ``create_resources`` returns those notes for the runtime to print.
Creating is idempotent: a resource that already exists is left as it is.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from .template import DYNAMODB_TABLE, FIREHOSE_STREAM, S3_BUCKET, SCHEDULE_GROUP, SQS_QUEUE, ResourceSpec

# Properties that have no local effect worth emulating (names are handled by the template reader).
_IGNORED = {"BucketName", "TableName", "QueueName", "Name", "Tags"}


def create_resources(session: Any, endpoint_url: str, resources: list[ResourceSpec]) -> list[str]:
    """Create every resource; returns notes on properties that were not applied."""
    notes: list[str] = []
    # A creator returns the top-level properties it applied (and, optionally, notes of its own on
    # nested ones it could not).
    creators: dict[str, Callable[[Any, ResourceSpec], set[str] | tuple[set[str], list[str]]]] = {
        S3_BUCKET: _create_bucket,
        DYNAMODB_TABLE: _create_table,
        SQS_QUEUE: _create_queue,
        SCHEDULE_GROUP: _create_schedule_group,
        FIREHOSE_STREAM: _create_delivery_stream,
    }
    services = {
        S3_BUCKET: "s3",
        DYNAMODB_TABLE: "dynamodb",
        SQS_QUEUE: "sqs",
        SCHEDULE_GROUP: "scheduler",
        FIREHOSE_STREAM: "firehose",
    }
    for resource in resources:
        service = services[resource.type]
        client = session.client(service, endpoint_url=endpoint_url)
        created = creators[resource.type](client, resource)
        applied, own_notes = created if isinstance(created, tuple) else (created, [])
        notes += [f"{resource.logical_id}: {note}" for note in own_notes]
        skipped = sorted(set(resource.properties) - applied - _IGNORED)
        if skipped:
            notes.append(f"{resource.logical_id}: not emulated locally: {', '.join(skipped)}")
    return notes


# -- S3 ----------------------------------------------------------------------------------------


def _create_bucket(s3: Any, resource: ResourceSpec) -> set[str]:
    name, properties = resource.physical_name, resource.properties
    region = s3.meta.region_name
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        return set(properties)
    applied: set[str] = set()
    if "BucketEncryption" in properties:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        applied.add("BucketEncryption")
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
        applied.add("PublicAccessBlockConfiguration")
    if "OwnershipControls" in properties:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=properties["OwnershipControls"])
        applied.add("OwnershipControls")
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": properties["VersioningConfiguration"]["Status"]}
        )
        applied.add("VersioningConfiguration")
    if "CorsConfiguration" in properties:
        s3.put_bucket_cors(
            Bucket=name, CORSConfiguration={"CORSRules": properties["CorsConfiguration"]["CorsRules"]}
        )
        applied.add("CorsConfiguration")
    return applied


# -- DynamoDB ----------------------------------------------------------------------------------

_TABLE_CALL = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "TableClass",
    "DeletionProtectionEnabled",
)


def _create_table(dynamodb: Any, resource: ResourceSpec) -> set[str]:
    name, properties = resource.physical_name, resource.properties
    arguments: dict[str, Any] = {key: properties[key] for key in _TABLE_CALL if key in properties}
    if "StreamSpecification" in properties:
        arguments["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    if "SSESpecification" in properties:
        sse = properties["SSESpecification"]
        arguments["SSESpecification"] = {
            "Enabled": sse.get("SSEEnabled") in (True, "true"),
            **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse},
        }
    try:
        dynamodb.create_table(TableName=name, **arguments)
    except dynamodb.exceptions.ResourceInUseException:
        return set(properties)
    applied = set(arguments)
    if "TimeToLiveSpecification" in properties:
        ttl = properties["TimeToLiveSpecification"]
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"],
                "Enabled": ttl.get("Enabled") in (True, "true"),
            },
        )
        applied.add("TimeToLiveSpecification")
    if "PointInTimeRecoverySpecification" in properties:
        enabled = properties["PointInTimeRecoverySpecification"].get("PointInTimeRecoveryEnabled")
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled in (True, "true")},
        )
        applied.add("PointInTimeRecoverySpecification")
    return applied


# -- SQS ---------------------------------------------------------------------------------------

_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
)


def _queue_attribute(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _create_queue(sqs: Any, resource: ResourceSpec) -> set[str]:
    properties = resource.properties
    attributes = {key: _queue_attribute(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
    # CreateQueue is idempotent for equal attributes; a queue left over with other attributes is
    # an error worth seeing, so it is not caught.
    sqs.create_queue(QueueName=resource.physical_name, Attributes=attributes)
    return set(attributes)


# -- EventBridge Scheduler -------------------------------------------------------------------------


def _create_schedule_group(scheduler: Any, resource: ResourceSpec) -> set[str]:
    # The embedded AWS keeps schedules (the control plane creates them) but does not fire them.
    with contextlib.suppress(scheduler.exceptions.ConflictException):
        scheduler.create_schedule_group(Name=resource.physical_name)
    return set()


# -- Firehose --------------------------------------------------------------------------------------

#: What the embedded Firehose emulates of an S3 destination; the rest is reported as a note.
_S3_DESTINATION = ("BucketARN", "RoleARN", "Prefix", "ErrorOutputPrefix", "CompressionFormat")


def _create_delivery_stream(firehose: Any, resource: ResourceSpec) -> tuple[set[str], list[str]]:
    """A DirectPut stream to S3. The embedded Firehose writes each PutRecordBatch at once (no
    buffering: BufferingHints is reported as not emulated), to <Prefix>YYYY/MM/DD/HH/<object>."""
    properties = resource.properties
    destination = properties.get("ExtendedS3DestinationConfiguration")
    if destination is None:
        return set(), []  # only S3 destinations are emulated; the notes list what was not applied
    config = {key: destination[key] for key in _S3_DESTINATION if key in destination}
    arguments: dict[str, Any] = {
        "DeliveryStreamName": resource.physical_name,
        "DeliveryStreamType": properties.get("DeliveryStreamType", "DirectPut"),
        "ExtendedS3DestinationConfiguration": config,
    }
    with contextlib.suppress(firehose.exceptions.ResourceInUseException):
        firehose.create_delivery_stream(**arguments)
    applied = {"DeliveryStreamType", "ExtendedS3DestinationConfiguration"}
    skipped = sorted(set(destination) - set(config))
    nested = ", ".join(f"ExtendedS3DestinationConfiguration.{name}" for name in skipped)
    notes = [f"not emulated locally: {nested}"] if skipped else []
    return applied, notes
