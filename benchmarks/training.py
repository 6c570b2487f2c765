"""Training throughput: our training path against implicit's ALS called directly on the same data.

    ours      personalize_core.training.trainer.train: weigh, split, ALS fit, holdout metrics, fold-in,
              and the solution version's files encoded (its user pages included): what the
              training function does between reading the data and uploading it
    implicit  coo -> csr, then AlternatingLeastSquares.fit on the same interactions, same factors,
              iterations and threads, nothing else (the reference)

Both report interactions a second; the ratio is our overhead. ``--workflow`` also times the
demo's whole workflow on a local stack (import jobs -> four trained versions -> ACTIVE campaigns).

    .venv/bin/python -m benchmarks.training --interactions 1000000 --users 100000 --items 20000
    .venv/bin/python -m benchmarks.training --interactions 10000000 --users 500000 --items 50000
    .venv/bin/python -m benchmarks.training --interactions 10000000 --users 500000 --items 50000 \
        --threads 1 --synthetic-workflow   # + import job -> ACTIVE campaign on a local stack
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from personalize_core.datasets.data import Interactions
from personalize_core.modelstore.layout import Recipe
from personalize_core.training.config import TrainingConfig
from personalize_core.training.trainer import TrainingInput, train


def synthetic(interactions: int, users: int, items: int, seed: int = 7) -> Interactions:
    """Users in 50 taste groups; each draws items from its group's Zipf-ranked share of the catalog."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, interactions, dtype=np.int64)
    group = user % 50
    rank = np.minimum(rng.zipf(1.3, interactions) - 1, items - 1)
    item = np.where(rng.random(interactions) < 0.7, (group * (items // 50) + rank) % items, rank)
    return Interactions(
        [f"u{i}" for i in range(users)],
        [f"i{i}" for i in range(items)],
        user.astype(np.int32),
        item.astype(np.int32),
        rng.integers(1_600_000_000, 1_700_000_000, interactions),
        ["click"],
        np.zeros(interactions, dtype=np.int16),
        np.full(interactions, np.nan, dtype=np.float32),
    )


def implicit_direct(data: Interactions, config: TrainingConfig, threads: int) -> float:
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import coo_matrix

    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        matrix = coo_matrix(
            (np.ones(data.rows, dtype=np.float32), (data.user_codes, data.item_codes)),
            shape=(len(data.user_ids), len(data.item_ids)),
        ).tocsr()
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            num_threads=threads,
            random_state=1,
        )
        model.fit(matrix, show_progress=False)
    return time.perf_counter() - started


def ours(data: Interactions, config: TrainingConfig, threads: int) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    with threadpool_limits(threads, "blas"):
        trained = train(
            TrainingInput(data),
            config,
            Recipe.USER_PERSONALIZATION,
            solution="bench",
            version="v1",
            region="us-east-1",
            account="123456789012",
            threads=threads,
        )
    return time.perf_counter() - started, trained.seconds


def workflow() -> None:
    from lambda_personalize.demo_data import DemoSpec, ensure_demo_data
    from lambda_personalize.local_runtime import LocalRuntime, RuntimeOptions

    folder = Path(tempfile.mkdtemp())
    ensure_demo_data(folder, DemoSpec())
    runtime = LocalRuntime(RuntimeOptions(port=0, aws_port=0, data_dir=folder, stack="bench-training"))
    started = time.perf_counter()
    runtime.start()  # starts the stack, then the demo's workflow: imports, 4 versions, 4 campaigns
    print(
        f"demo workflow (stack start, 2 imports, 4 trained versions, 4 ACTIVE campaigns): "
        f"{time.perf_counter() - started:.1f} s"
    )
    runtime.stop()


def synthetic_workflow(data: Interactions) -> None:
    """Personalize's workflow on a local stack (`make run`'s, without the demo) for ``data``: the
    CSV into S3 (not timed), then import job -> ACTIVE, solution version -> ACTIVE, campaign ->
    ACTIVE, each timed from its Create call, through an unchanged boto3 client."""
    import boto3

    from lambda_personalize.demo_training import DEMO_ROLE, SCHEMAS
    from lambda_personalize.local_runtime import LocalRuntime, RuntimeOptions

    folder = Path(tempfile.mkdtemp())
    csv_path = folder / "interactions.csv"
    with csv_path.open("w") as out:
        out.write("USER_ID,ITEM_ID,EVENT_TYPE,TIMESTAMP\n")
        for start in range(0, data.rows, 1_000_000):
            block = slice(start, start + 1_000_000)
            out.writelines(
                f"{data.user_ids[u]},{data.item_ids[i]},click,{t}\n"
                for u, i, t in zip(
                    data.user_codes[block].tolist(),
                    data.item_codes[block].tolist(),
                    data.timestamps[block].tolist(),
                    strict=True,
                )
            )
    runtime = LocalRuntime(
        RuntimeOptions(port=0, aws_port=0, data_dir=folder, stack="bench-training-workflow", demo=None)
    )
    runtime.start()
    try:
        personalize = boto3.client("personalize", endpoint_url=runtime.api_url, region_name="us-east-1")
        s3 = boto3.client("s3", endpoint_url=runtime.aws_url, region_name="us-east-1")
        s3.create_bucket(Bucket="bench-data")
        s3.upload_file(str(csv_path), "bench-data", "interactions.csv")
        print(f"workflow: {data.rows:,} interactions, CSV {csv_path.stat().st_size / 1e6:.0f} MB in S3")

        def wait(describe: Any, key: str, arn_name: str, arn: str) -> float:
            began = time.perf_counter()
            while True:
                found = describe(**{arn_name: arn})[key]
                if found["status"] == "ACTIVE":
                    return time.perf_counter() - began
                if "FAILED" in found["status"]:
                    raise SystemExit(f"{arn}: {found['status']} {found.get('failureReason', '')}")
                time.sleep(0.2)

        started = time.perf_counter()
        group = personalize.create_dataset_group(name="bench")["datasetGroupArn"]
        schema = {
            "type": "record",
            "name": "Interactions",
            "fields": SCHEMAS["INTERACTIONS"],
            "version": "1.0",
        }
        schema_arn = personalize.create_schema(name="bench", schema=json.dumps(schema))["schemaArn"]
        dataset = personalize.create_dataset(
            name="bench", schemaArn=schema_arn, datasetGroupArn=group, datasetType="INTERACTIONS"
        )["datasetArn"]
        job = personalize.create_dataset_import_job(
            jobName="bench",
            datasetArn=dataset,
            dataSource={"dataLocation": "s3://bench-data/interactions.csv"},
            roleArn=DEMO_ROLE.format(account="123456789012"),
        )["datasetImportJobArn"]
        imported = wait(
            personalize.describe_dataset_import_job, "datasetImportJob", "datasetImportJobArn", job
        )
        solution = personalize.create_solution(
            name="bench",
            datasetGroupArn=group,
            recipeArn="arn:aws:personalize:::recipe/aws-user-personalization",
            performAutoTraining=False,
        )["solutionArn"]
        version = personalize.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        trained = wait(
            personalize.describe_solution_version, "solutionVersion", "solutionVersionArn", version
        )
        campaign = personalize.create_campaign(name="bench", solutionVersionArn=version)["campaignArn"]
        served = wait(personalize.describe_campaign, "campaign", "campaignArn", campaign)
        total = time.perf_counter() - started
        runtime_client = boto3.client(
            "personalize-runtime", endpoint_url=runtime.api_url, region_name="us-east-1"
        )
        answer = runtime_client.get_recommendations(
            campaignArn=campaign, userId=data.user_ids[0], numResults=25
        )
        assert len(answer["itemList"]) == 25
        print(
            f"workflow: import job -> ACTIVE {imported:.1f} s, solution version -> ACTIVE {trained:.1f} s, "
            f"campaign -> ACTIVE {served:.1f} s; import job created -> ACTIVE campaign {total:.1f} s "
            f"({data.rows / total:,.0f} interactions/s); the campaign then served 25 items"
        )
    finally:
        runtime.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--workflow", action="store_true", help="also time the demo's workflow on a local stack"
    )
    parser.add_argument(
        "--synthetic-workflow",
        action="store_true",
        help="also time import job -> ACTIVE campaign for the synthetic data on a local stack",
    )
    args = parser.parse_args()
    data = synthetic(args.interactions, args.users, args.items)
    config = TrainingConfig()
    print(
        f"{data.rows:,} interactions, {args.users:,} users, {args.items:,} items; ALS factors "
        f"{config.factors}, {config.iterations} iterations"
    )
    print(
        "| threads | implicit (s) | implicit interactions/s | ours (s) | ours interactions/s "
        "| ours/implicit | our steps (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        reference = implicit_direct(data, config, threads)
        elapsed, steps = ours(data, config, threads)
        print(
            f"| {threads} | {reference:.1f} | {data.rows / reference:,.0f} | {elapsed:.1f} | "
            f"{data.rows / elapsed:,.0f} | {elapsed / reference:.2f} | {steps} |"
        )
    if args.workflow:
        workflow()
    if args.synthetic_workflow:
        synthetic_workflow(data)


if __name__ == "__main__":
    main()
