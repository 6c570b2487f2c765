"""``lambda-personalize``: publish solution versions and point campaigns at them.

    lambda-personalize publish --bucket B --solution movies --recipe USER_PERSONALIZATION \\
        --item-ids items.txt --item-factors items.npy --user-ids users.txt --user-factors users.npy \\
        --interactions interactions.csv --items items.csv --users users.csv \\
        --context-factors context.json --campaign movies-for-you
    lambda-personalize campaign --bucket B --name movies-for-you --solution-version-arn ARN
    lambda-personalize versions --bucket B
    lambda-personalize run        # the whole stack locally: embedded AWS, demo model, API on :3000
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personalize_core.errors import ArtifactError, PersonalizeError
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import list_versions, put_campaign, read_manifest

from .publish import PublishError, PublishInputs, publish_files

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.session.Session(region_name=args.region)


def _s3(args: argparse.Namespace) -> S3Client:
    client: S3Client = _session(args).client("s3", endpoint_url=args.endpoint_url)
    return client


def _account(args: argparse.Namespace) -> str:
    if args.account_id:
        return str(args.account_id)
    sts = _session(args).client("sts", endpoint_url=args.endpoint_url)
    return str(sts.get_caller_identity()["Account"])


def _region(args: argparse.Namespace) -> str:
    return str(_session(args).region_name or "us-east-1")


def _bucket(args: argparse.Namespace) -> ModelBucket:
    return ModelBucket(_s3(args), args.bucket)


def cmd_publish(args: argparse.Namespace) -> dict[str, Any]:
    inputs = PublishInputs(
        solution=args.solution,
        recipe=Recipe(args.recipe),
        item_ids=args.item_ids,
        item_factors=args.item_factors,
        user_ids=args.user_ids,
        user_factors=args.user_factors,
        interactions=args.interactions,
        items=args.items,
        users=args.users,
        context_factors=args.context_factors,
        popularity=args.popularity,
        version=args.version,
    )
    return publish_files(
        _bucket(args), inputs, region=_region(args), account=_account(args), campaign=args.campaign
    )


def cmd_campaign(args: argparse.Namespace) -> dict[str, Any]:
    bucket = _bucket(args)
    return put_campaign(bucket, args.name, read_manifest(bucket, args.solution_version_arn)).to_json()


def cmd_versions(args: argparse.Namespace) -> dict[str, Any]:
    return {"solutionVersions": [prefix.rstrip("/") for prefix in list_versions(_bucket(args))]}


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """A new version of a solution, trained here by the training function's own code (for data past
    Lambda's 15 minutes / 10 GB): the same records, the same files, the same statuses."""
    from personalize_core.control.records import RecordsTable
    from personalize_core.control.solution_versions import new_version
    from personalize_core.control.workspace import SOLUTION, SOLUTION_VERSION, Workspace
    from personalize_core.training.messages import TrainingQueue
    from personalize_core.training.worker import TrainingWorker

    session = _session(args)
    records = RecordsTable(
        args.records_table, lambda: session.client("dynamodb", endpoint_url=args.endpoint_url)
    )
    ws = Workspace(records, _bucket(args), TrainingQueue(""), region=_region(args), account=_account(args))
    version = new_version(ws, ws.record(args.solution_arn, SOLUTION), args.name, enqueue=False)
    TrainingWorker(ws, threads=args.threads).run_training(version.arn, last=True)
    done = ws.record(version.arn, SOLUTION_VERSION)
    out = {
        "solutionVersionArn": done.arn,
        "status": done.status,
        "metrics": done.attributes.get("metrics", {}),
    }
    return out | ({"failureReason": done.failure_reason} if done.failure_reason else {})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambda-personalize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bucket", required=True, help="the model bucket (the stack's ModelBucketName output)"
    )
    common.add_argument("--region", help="AWS region (default: your AWS config)")
    common.add_argument("--endpoint-url", help="S3/STS endpoint, e.g. the local runtime's embedded AWS")
    common.add_argument("--account-id", help="account id for ARNs (default: STS GetCallerIdentity)")
    sub = parser.add_subparsers(dest="command", required=True)

    publish = sub.add_parser(
        "publish", parents=[common], help="publish a solution version (and point a campaign)"
    )
    publish.add_argument("--solution", required=True, help="solution name (1-63 of [a-zA-Z0-9-_])")
    publish.add_argument("--recipe", required=True, choices=[r.value for r in Recipe])
    publish.add_argument(
        "--item-ids", type=Path, required=True, help=".txt (one a line), .json, .npy or .csv"
    )
    publish.add_argument("--item-factors", type=Path, help="float .npy [items, dims]")
    publish.add_argument("--user-ids", type=Path, help=".txt (one a line), .json, .npy or .csv")
    publish.add_argument("--user-factors", type=Path, help="float .npy [users, dims]")
    publish.add_argument(
        "--interactions",
        type=Path,
        help="Personalize Interactions CSV; popularity is counted, and with USER_ID (TIMESTAMP, "
        "EVENT_TYPE) each user's 100 most recent interactions per event type are kept for filters",
    )
    publish.add_argument(
        "--items",
        type=Path,
        help="Personalize Items CSV (ITEM_ID + columns; a|b = several values): filters, metadataColumns",
    )
    publish.add_argument("--users", type=Path, help="Personalize Users CSV (USER_ID + columns): CurrentUser")
    publish.add_argument(
        "--context-factors",
        type=Path,
        help='JSON {"FIELD": {"value": [dims floats], ...}}: vectors added to the user vector for context',
    )
    publish.add_argument("--popularity", type=Path, help="numeric .npy [items], instead of --interactions")
    publish.add_argument("--version", help="version id (default: derived from the content)")
    publish.add_argument("--campaign", help="create this campaign, or switch it to the new version")
    publish.set_defaults(run=cmd_publish)

    campaign = sub.add_parser("campaign", parents=[common], help="create a campaign or switch its version")
    campaign.add_argument("--name", required=True)
    campaign.add_argument("--solution-version-arn", required=True)
    campaign.set_defaults(run=cmd_campaign)

    versions = sub.add_parser("versions", parents=[common], help="list the published solution versions")
    versions.set_defaults(run=cmd_versions)

    trainer = sub.add_parser(
        "train",
        parents=[common],
        help="train a new version of a solution on this machine (the stack's records)",
    )
    trainer.add_argument("--records-table", required=True, help="the stack's RecordsTableName output")
    trainer.add_argument("--solution-arn", required=True)
    trainer.add_argument("--name", help="the version's id (default: a random one)")
    trainer.add_argument("--threads", type=int, default=0, help="ALS threads (default: one per CPU)")
    trainer.set_defaults(run=cmd_train)

    run = sub.add_parser(
        "run",
        help="run the template locally: embedded AWS, demo model, every API route, console",
        description="Serve template.yaml locally until Ctrl-C. Every option also reads an environment "
        "variable (LAMBDA_PERSONALIZE_PORT, _AWS_PORT, _DATA_DIR, _HOST, _TEMPLATE).",
    )
    run.add_argument("--template", type=Path, default=Path(_env("TEMPLATE", "template.yaml")))
    run.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="interface for both servers")
    run.add_argument("--port", type=int, default=int(_env("PORT", "3000")), help="API port (0: any free)")
    run.add_argument(
        "--aws-port", type=int, default=int(_env("AWS_PORT", "5050")), help="embedded AWS port (0: any free)"
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path(_env("DATA_DIR", ".local/demo")),
        help="where the demo's CSVs and arrays are written, and reused on the next run",
    )
    run.add_argument("--no-demo", action="store_true", help="publish no demo model")
    run.add_argument("--demo-items", type=int, default=5000)
    run.add_argument("--demo-users", type=int, default=3000)
    run.add_argument("--region", default="us-east-1")
    run.add_argument(
        "--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE", help="template parameters"
    )
    run.add_argument("--verbose", action="store_true", help="log every request and the functions' metrics")
    run.add_argument(
        "--sqs-environments",
        type=int,
        default=int(_env("SQS_ENVIRONMENTS", "0")) or None,
        metavar="N",
        help="environments per SQS-driven function (default: the machine's CPUs, at least 2; "
        "capped by the template's MaximumConcurrency)",
    )
    run.set_defaults(run=cmd_run)
    return parser


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LAMBDA_PERSONALIZE_{name}") or default


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from .demo_data import DemoSpec
    from .local_runtime import LocalRuntime, RuntimeOptions, banner

    overrides = dict(item.split("=", 1) for item in args.parameter_overrides)
    options = RuntimeOptions(
        template=args.template,
        host=args.host,
        port=args.port,
        aws_port=args.aws_port,
        data_dir=args.data_dir,
        demo=None if args.no_demo else DemoSpec(items=args.demo_items, users=args.demo_users),
        region=args.region,
        parameter_overrides=overrides,
        verbose=args.verbose,
        sqs_environments=args.sqs_environments,
    )
    # `kill -USR1 <pid>` prints every thread's stack: what a runtime that does not stop is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Ctrl-C stops it even when started in the background by a shell without job control, which
    # starts its children with SIGINT ignored (Python then installs no KeyboardInterrupt for it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runtime = LocalRuntime(options).start()
    try:
        for line in banner(runtime):
            print(line, flush=True)
        runtime.wait()
    finally:
        runtime.stop()
        print("Stopped.", flush=True)
    return {}


def main(argv: list[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from .local_runtime import LocalRuntimeError
    from .template import TemplateError

    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (PublishError, LocalRuntimeError, TemplateError, ArtifactError, PersonalizeError) as exc:
        print(f"lambda-personalize: error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:  # S3 or STS said no (a missing bucket, no access)
        print(f"lambda-personalize: error: {exc}", file=sys.stderr)
        return 2
    if result:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
