"""The data path, end to end, for an unchanged boto3 "personalize" client: dataset group -> schema ->
dataset -> import job -> solution -> solution version (trained by the training function, driven
by its SQS queue) -> metrics -> campaign / recommender -> GetRecommendations.

The AWS parts are template.yaml's (RecordsTable, TrainingQueue) in moto's server; the control plane
and the runtime are the real handlers on loopback HTTP; datasets are small (a few hundred users).
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_personalize.demo_data import DemoFiles, DemoSpec, write_demo_data
from lambda_personalize.sqs_poller import SqsPoller
from personalize_core.control.workspace import get_workspace
from personalize_core.training import worker as worker_module
from personalize_core.training.evaluation import METRIC_NAMES
from tests.conftest import new_bucket, template_properties
from tests.utils import ACCOUNT, REGION, clear_process_caches, load_function

ROLE = f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-training"
INTERACTIONS_SCHEMA = {
    "type": "record",
    "name": "Interactions",
    "namespace": "com.amazonaws.personalize.schema",
    "fields": [
        {"name": "USER_ID", "type": "string"},
        {"name": "ITEM_ID", "type": "string"},
        {"name": "EVENT_TYPE", "type": "string"},
        {"name": "TIMESTAMP", "type": "long"},
    ],
    "version": "1.0",
}
ITEMS_SCHEMA = {
    "type": "record",
    "name": "Items",
    "namespace": "com.amazonaws.personalize.schema",
    "fields": [
        {"name": "ITEM_ID", "type": "string"},
        {"name": "TITLE", "type": "string", "textual": True},
        {"name": "GENRES", "type": ["null", "string"], "categorical": True},
        {"name": "YEAR", "type": "int"},
        {"name": "PRICE", "type": "float"},
    ],
    "version": "1.0",
}


class Training:
    def __init__(
        self, personalize: Any, s3: Any, poller: SqsPoller, data_bucket: str, files: DemoFiles
    ) -> None:
        self.personalize = personalize
        self.s3 = s3
        self.poller = poller
        self.data_bucket = data_bucket
        self.files = files

    def upload(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=self.data_bucket, Key=key, Body=body)
        return f"s3://{self.data_bucket}/{key}"

    def group(self, domain: str | None = None) -> str:
        name = f"g-{uuid.uuid4().hex[:8]}"
        extra = {"domain": domain} if domain else {}
        return str(self.personalize.create_dataset_group(name=name, **extra)["datasetGroupArn"])

    def dataset(self, group: str, kind: str, schema: dict[str, Any], source: Path) -> str:
        p = self.personalize
        schema_arn = p.create_schema(name=f"s-{uuid.uuid4().hex[:8]}", schema=json.dumps(schema))["schemaArn"]
        dataset = p.create_dataset(
            name=f"d-{uuid.uuid4().hex[:8]}", schemaArn=schema_arn, datasetGroupArn=group, datasetType=kind
        )["datasetArn"]
        job = self.import_job(
            dataset, self.upload(f"{uuid.uuid4().hex[:8]}/{source.name}", source.read_bytes())
        )
        assert job["status"] == "ACTIVE", job.get("failureReason")
        return str(dataset)

    def import_job(self, dataset: str, location: str, mode: str = "FULL") -> dict[str, Any]:
        arn = self.personalize.create_dataset_import_job(
            jobName=f"j-{uuid.uuid4().hex[:8]}",
            datasetArn=dataset,
            dataSource={"dataLocation": location},
            roleArn=ROLE,
            importMode=mode,
        )["datasetImportJobArn"]
        assert self.personalize.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"][
            "status"
        ] in ("CREATE PENDING", "CREATE IN_PROGRESS")
        self.poller.drain()
        job: dict[str, Any] = self.personalize.describe_dataset_import_job(datasetImportJobArn=arn)[
            "datasetImportJob"
        ]
        return job

    def group_with_data(self, domain: str | None = None) -> str:
        group = self.group(domain)
        self.dataset(group, "INTERACTIONS", INTERACTIONS_SCHEMA, self.files.interactions_csv)
        self.dataset(group, "ITEMS", ITEMS_SCHEMA, self.files.items_csv)
        return group

    def solution(self, group: str, recipe: str = "aws-user-personalization", **options: Any) -> str:
        return str(
            self.personalize.create_solution(
                name=f"sol-{uuid.uuid4().hex[:8]}",
                datasetGroupArn=group,
                recipeArn=f"arn:aws:personalize:::recipe/{recipe}",
                **options,
            )["solutionArn"]
        )

    def trained_version(self, solution: str) -> dict[str, Any]:
        arn = self.personalize.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        self.poller.drain()
        version: dict[str, Any] = self.personalize.describe_solution_version(solutionVersionArn=arn)[
            "solutionVersion"
        ]
        return version


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    files = DemoFiles(tmp_path_factory.mktemp("training-data"))
    write_demo_data(files, DemoSpec(items=800, users=1500, dimensions=32, interactions_per_user=30, seed=11))
    return files


@pytest.fixture
def training(
    personalize: Any,
    runtime: Any,
    moto_url: str,
    s3: Any,
    demo_files: DemoFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Training]:
    """template.yaml's TrainingQueue (+ DLQ) and a schedule group, the functions' environment, and a
    poller driving the training function."""
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    scheduler = boto3.client("scheduler", endpoint_url=moto_url, region_name=REGION)
    suffix = uuid.uuid4().hex[:10]
    redrive = template_properties("TrainingQueue")["RedrivePolicy"]
    queue_url = sqs.create_queue(QueueName=f"training-{suffix}", Attributes={"VisibilityTimeout": "1"})[
        "QueueUrl"
    ]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    scheduler.create_schedule_group(Name=f"training-{suffix}")
    monkeypatch.setenv("TRAINING_QUEUE_URL", queue_url)
    monkeypatch.setenv("TRAINING_QUEUE_ARN", queue_arn)
    monkeypatch.setenv("TRAINING_MAX_RECEIVES", str(redrive["maxReceiveCount"]))
    monkeypatch.setenv("SCHEDULE_GROUP", f"training-{suffix}")
    monkeypatch.setenv("SCHEDULER_ROLE_ARN", f"arn:aws:iam::{ACCOUNT}:role/scheduler")
    monkeypatch.setenv("ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("TRAINING_THREADS", "1")
    clear_process_caches()
    poller = SqsPoller(
        queue_url, load_function("training").lambda_handler, "TrainingFunction", 1, sqs_client=sqs
    )
    yield Training(personalize, s3, poller, new_bucket(s3), demo_files)
    clear_process_caches()


def test_the_personalize_workflow_ends_in_a_served_campaign(training: Training, runtime: Any) -> None:
    p = training.personalize
    # Given a dataset group whose Interactions and Items datasets were imported from S3
    group = training.group_with_data()
    datasets = p.list_datasets(datasetGroupArn=group)["datasets"]
    assert sorted(d["datasetType"] for d in datasets) == ["INTERACTIONS", "ITEMS"]
    # When a solution is created and a version trained through the training queue
    solution = training.solution(group, "aws-user-personalization-v2", performAutoTraining=False)
    version = training.trained_version(solution)
    # Then the version is ACTIVE, in its group, listed with the solution, with Personalize's metrics
    assert version["status"] == "ACTIVE", version.get("failureReason")
    assert version["datasetGroupArn"] == group
    listed = p.list_solution_versions(solutionArn=solution)["solutionVersions"]
    assert [v["solutionVersionArn"] for v in listed] == [version["solutionVersionArn"]]
    metrics = p.get_solution_metrics(solutionVersionArn=version["solutionVersionArn"])["metrics"]
    assert set(metrics) == set(METRIC_NAMES)
    # And the trained model beats the popularity baseline on the same holdout, clearly
    record = get_workspace().records.get(version["solutionVersionArn"])
    assert record is not None
    baseline = record.attributes["popularityBaselineMetrics"]
    for name in (
        "precision_at_10",
        "normalized_discounted_cumulative_gain_at_10",
        "mean_reciprocal_rank_at_25",
    ):
        assert metrics[name] > 1.5 * baseline[name], (name, metrics[name], baseline[name])
    # When a campaign serves it, Then GetRecommendations answers from the trained version
    campaign = p.create_campaign(
        name=f"c-{uuid.uuid4().hex[:8]}", solutionVersionArn=version["solutionVersionArn"]
    )
    answer = runtime.get_recommendations(campaignArn=campaign["campaignArn"], userId="user-3", numResults=5)
    assert len(answer["itemList"]) == 5
    assert all(0 < i["score"] < 1 for i in answer["itemList"])
    # And a filter in the dataset group is checked against its datasets' schemas, and applies
    with pytest.raises(p.exceptions.InvalidInputException, match=r"Items\.COLOUR is not a column"):
        p.create_filter(
            name=f"f-{uuid.uuid4().hex[:8]}",
            datasetGroupArn=group,
            filterExpression='INCLUDE ItemID WHERE Items.COLOUR IN ("red")',
        )
    filter_arn = p.create_filter(
        name=f"f-{uuid.uuid4().hex[:8]}",
        datasetGroupArn=group,
        filterExpression="INCLUDE ItemID WHERE Items.GENRES IN ($G)",
    )["filterArn"]
    filtered = runtime.get_recommendations(
        campaignArn=campaign["campaignArn"],
        userId="user-3",
        numResults=5,
        filterArn=filter_arn,
        filterValues={"G": '"comedy"'},
        metadataColumns={"ITEMS": ["GENRES"]},
    )["itemList"]
    assert filtered
    assert all("comedy" in i["metadata"]["GENRES"].split("|") for i in filtered)


def test_related_items_serve_the_better_of_co_occurrence_and_item_factors(
    training: Training, runtime: Any
) -> None:
    # Given a RELATED_ITEMS version trained on the demo-like catalog
    group = training.group_with_data()
    version = training.trained_version(training.solution(group, "aws-sims"))
    assert version["status"] == "ACTIVE", version.get("failureReason")
    # Then training measured both ways of relating items on the holdout, and kept the better
    record = get_workspace().records.get(version["solutionVersionArn"])
    assert record is not None
    compared = record.attributes["relatedItemsCompared"]
    key = "normalized_discounted_cumulative_gain_at_10"
    better = max(compared, key=lambda way: compared[way][key])
    metrics = training.personalize.get_solution_metrics(solutionVersionArn=version["solutionVersionArn"])
    assert metrics["metrics"] == compared[better]
    # And on this catalog co-occurrence is the better, so a campaign answers with the items that
    # share the most users with the query (cosine of their user sets), ties to the more popular
    assert better == "co-occurrence"
    campaign = training.personalize.create_campaign(
        name=f"c-{uuid.uuid4().hex[:8]}", solutionVersionArn=version["solutionVersionArn"]
    )["campaignArn"]
    rows = list(csv.DictReader(training.files.interactions_csv.open()))
    users_of: dict[str, set[str]] = {}
    for row in rows:
        users_of.setdefault(row["ITEM_ID"], set()).add(row["USER_ID"])
    query = max(users_of, key=lambda item: (len(users_of[item]), item))
    similarity = {
        item: len(users & users_of[query]) / (len(users) * len(users_of[query])) ** 0.5
        for item, users in users_of.items()
        if item != query
    }
    answer = runtime.get_recommendations(campaignArn=campaign, itemId=query, numResults=10)["itemList"]
    got = [similarity[item["itemId"]] for item in answer]
    assert got == sorted(got, reverse=True)
    assert got[0] == max(similarity.values())
    assert all("score" not in item for item in answer)


def test_bad_csvs_and_bad_schemas_are_refused_with_a_clear_reason(training: Training) -> None:
    p = training.personalize
    # Schemas that are not Personalize's are refused at CreateSchema, with the reason
    with pytest.raises(p.exceptions.InvalidInputException, match="not valid JSON"):
        p.create_schema(name="bad-json", schema="{not json")
    broken = {**INTERACTIONS_SCHEMA, "fields": [{"name": "USER_ID", "type": "uuid"}]}
    with pytest.raises(p.exceptions.InvalidInputException, match=r"fields\[0\] \(USER_ID\): type \"uuid\""):
        p.create_schema(name="bad-type", schema=json.dumps(broken))
    # A schema that does not fit the dataset type is refused at CreateDataset
    group = training.group()
    no_time = {**INTERACTIONS_SCHEMA, "fields": INTERACTIONS_SCHEMA["fields"][:3]}
    schema = p.create_schema(name=f"s-{uuid.uuid4().hex[:8]}", schema=json.dumps(no_time))["schemaArn"]
    with pytest.raises(p.exceptions.InvalidInputException, match="needs a non-null TIMESTAMP field"):
        p.create_dataset(name="d", schemaArn=schema, datasetGroupArn=group, datasetType="INTERACTIONS")
    # A CSV whose row breaks the schema fails its import job, naming the row and the column
    schema = p.create_schema(name=f"s-{uuid.uuid4().hex[:8]}", schema=json.dumps(INTERACTIONS_SCHEMA))[
        "schemaArn"
    ]
    dataset = p.create_dataset(name="d", schemaArn=schema, datasetGroupArn=group, datasetType="INTERACTIONS")[
        "datasetArn"
    ]
    bad = b"USER_ID,ITEM_ID,EVENT_TYPE,TIMESTAMP\nu1,i1,watch,1700000000\nu2,i2,watch,yesterday\n"
    job = training.import_job(dataset, training.upload("bad/interactions.csv", bad))
    assert job["status"] == "CREATE FAILED"
    assert "row 2 (line 3), column TIMESTAMP: 'yesterday' is not an integer" in job["failureReason"]
    unknown = b"USER_ID,ITEM_ID,COLOUR,TIMESTAMP\nu1,i1,red,1700000000\n"
    job = training.import_job(dataset, training.upload("bad/colour.csv", unknown))
    assert "column 'COLOUR' is not a field of the dataset's schema" in job["failureReason"]
    missing = training.import_job(dataset, f"s3://{training.data_bucket}/nothing/here.csv")
    assert missing["status"] == "CREATE FAILED"
    assert "does not exist" in missing["failureReason"]
    # And nothing of them became the dataset's data: a version cannot train on it
    solution = training.solution(group, performAutoTraining=False)
    with pytest.raises(p.exceptions.InvalidInputException, match="no imported Interactions data"):
        p.create_solution_version(solutionArn=solution)
    # Unknown recipes are refused clearly
    with pytest.raises(
        p.exceptions.InvalidInputException, match="Recipe aws-hrnn-coldstart is not supported"
    ):
        training.solution(group, "aws-hrnn-coldstart")


def test_a_stopped_version_never_goes_active(training: Training) -> None:
    p = training.personalize
    group = training.group_with_data()
    solution = training.solution(group, performAutoTraining=False)
    # Stopped before the training function picks it up
    arn = p.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    p.stop_solution_version_creation(solutionVersionArn=arn)
    training.poller.drain()
    assert (
        p.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]["status"] == "CREATE STOPPED"
    )
    # Stopped while it trains (the stop lands between two ALS iterations)
    worker = load_function("training")
    stopped: list[str] = []
    real_train = worker_module.train

    def train_and_stop(*args: Any, **kwargs: Any) -> Any:
        checkpoint = kwargs["checkpoint"]

        def stop_then_check() -> None:
            if not stopped:
                stopped.append(p.stop_solution_version_creation(solutionVersionArn=arn2) and arn2)
            checkpoint()

        return real_train(*args, **{**kwargs, "checkpoint": stop_then_check})

    arn2 = p.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    trainer = worker_module.get_training_worker()
    trainer.trainer = train_and_stop
    try:
        training.poller.drain()
    finally:
        trainer.trainer = real_train
    assert worker is not None
    assert stopped
    described = p.describe_solution_version(solutionVersionArn=arn2)["solutionVersion"]
    assert described["status"] == "CREATE STOPPED"
    # And neither was published: no manifest, no campaign can serve them, no metrics
    solution_name = solution.rsplit("/", 1)[1]
    assert not training.s3.list_objects_v2(
        Bucket=get_workspace().bucket.bucket, Prefix=f"solutions/{solution_name}/"
    ).get("Contents")
    with pytest.raises(p.exceptions.ResourceNotFoundException):
        p.create_campaign(name=f"c-{uuid.uuid4().hex[:8]}", solutionVersionArn=arn2)
    with pytest.raises(p.exceptions.ResourceInUseException):
        p.get_solution_metrics(solutionVersionArn=arn2)


def test_a_recommender_is_served_through_its_arn(training: Training, runtime: Any) -> None:
    p = training.personalize
    group = training.group_with_data(domain="VIDEO_ON_DEMAND")
    with pytest.raises(p.exceptions.InvalidInputException, match="is a ECOMMERCE use case"):
        p.create_recommender(
            name="x",
            datasetGroupArn=group,
            recipeArn="arn:aws:personalize:::recipe/aws-ecomm-recommended-for-you",
        )
    arn = p.create_recommender(
        name=f"r-{uuid.uuid4().hex[:8]}",
        datasetGroupArn=group,
        recipeArn="arn:aws:personalize:::recipe/aws-vod-top-picks",
    )["recommenderArn"]
    assert p.describe_recommender(recommenderArn=arn)["recommender"]["status"] == "CREATE PENDING"
    training.poller.drain()
    described = p.describe_recommender(recommenderArn=arn)["recommender"]
    assert described["status"] == "ACTIVE", described.get("failureReason")
    assert set(described["modelMetrics"]) == set(METRIC_NAMES)
    assert [r["recommenderArn"] for r in p.list_recommenders(datasetGroupArn=group)["recommenders"]] == [arn]
    answer = runtime.get_recommendations(recommenderArn=arn, userId="user-3", numResults=4)
    assert len(answer["itemList"]) == 4
    # Stopped, it answers no more; started again, it does
    p.stop_recommender(recommenderArn=arn)
    assert p.describe_recommender(recommenderArn=arn)["recommender"]["status"] == "INACTIVE"
    time.sleep(0.3)  # the store re-reads the pointer after its TTL (0.2 s in tests)
    with pytest.raises(runtime.exceptions.InvalidInputException, match="is not ACTIVE"):
        runtime.get_recommendations(recommenderArn=arn, userId="user-3")
    p.start_recommender(recommenderArn=arn)
    time.sleep(0.3)
    assert runtime.get_recommendations(recommenderArn=arn, userId="user-3", numResults=2)["itemList"]
    p.update_recommender(recommenderArn=arn, recommenderConfig={"minRecommendationRequestsPerSecond": 2})
    assert p.describe_recommender(recommenderArn=arn)["recommender"]["recommenderConfig"] == {
        "minRecommendationRequestsPerSecond": 2
    }
    p.delete_recommender(recommenderArn=arn)
    with pytest.raises(p.exceptions.ResourceNotFoundException):
        p.describe_recommender(recommenderArn=arn)


def test_automatic_training_is_a_schedule_and_synced_campaigns_follow(
    training: Training, runtime: Any, moto_url: str
) -> None:
    p = training.personalize
    group = training.group_with_data()
    # Given a solution with automatic training every 2 days
    solution = training.solution(
        group, solutionConfig={"autoTrainingConfig": {"schedulingExpression": "rate(2 days)"}}
    )
    name = solution.rsplit("/", 1)[1]
    scheduler = boto3.client("scheduler", endpoint_url=moto_url, region_name=REGION)
    settings = get_workspace().schedules
    assert settings is not None
    schedule = scheduler.get_schedule(Name=name, GroupName=settings.group)
    # Then a schedule sends the training queue an autotrain message at that rate
    assert schedule["ScheduleExpression"] == "rate(2 days)"
    assert schedule["Target"]["Arn"] == settings.queue_arn
    assert json.loads(schedule["Target"]["Input"]) == {"kind": "autotrain", "arn": solution}
    # And a campaign on <solution>/$LATEST with syncWithLatestSolutionVersion follows new versions
    first = training.trained_version(solution)
    campaign = p.create_campaign(
        name=f"c-{uuid.uuid4().hex[:8]}",
        solutionVersionArn=f"{solution}/$LATEST",
        campaignConfig={"syncWithLatestSolutionVersion": True},
    )["campaignArn"]
    assert (
        p.describe_campaign(campaignArn=campaign)["campaign"]["solutionVersionArn"]
        == first["solutionVersionArn"]
    )
    # When the schedule fires (its message delivered as EventBridge Scheduler would send it)
    boto3.client("sqs", endpoint_url=moto_url, region_name=REGION).send_message(
        QueueUrl=training.poller.queue_url, MessageBody=schedule["Target"]["Input"]
    )
    training.poller.drain()
    # Then a new AUTOMATIC version is trained and the campaign moved to it
    versions = p.list_solution_versions(solutionArn=solution)["solutionVersions"]
    assert len(versions) == 2
    assert all(v["status"] == "ACTIVE" for v in versions)
    newest = next(v for v in versions if v["solutionVersionArn"] != first["solutionVersionArn"])
    assert newest["trainingType"] == "AUTOMATIC"
    assert (
        p.describe_campaign(campaignArn=campaign)["campaign"]["solutionVersionArn"]
        == newest["solutionVersionArn"]
    )
    # Turned off, the schedule is gone
    p.update_solution(solutionArn=solution, performAutoTraining=False)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=name, GroupName=settings.group)
