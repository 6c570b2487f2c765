"""The publish CLI: refuses bad input with a clear message and uploads nothing half-way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambda_personalize.cli import main
from tests.utils import random_model


def all_keys(s3: Any, bucket: str) -> list[str]:
    return [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def write_inputs(tmp_path: Path, model: dict[str, Any]) -> dict[str, Path]:
    paths = {
        "item_ids": tmp_path / "items.txt",
        "user_ids": tmp_path / "users.json",
        "item_factors": tmp_path / "item_factors.npy",
        "user_factors": tmp_path / "user_factors.npy",
        "interactions": tmp_path / "interactions.csv",
    }
    paths["item_ids"].write_text("\n".join(model["item_ids"]) + "\n")
    paths["user_ids"].write_text(json.dumps(model["user_ids"]))
    np.save(paths["item_factors"], model["item_factors"])
    np.save(paths["user_factors"], model["user_factors"])
    rows = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE"] + [
        f"user-{n % 5},item-{n % 7},{1700000000 + n},click" for n in range(100)
    ]
    paths["interactions"].write_text("\n".join(rows) + "\n")
    return paths


def cli(moto_url: str, bucket: str, *args: str | Path) -> list[str]:
    return ["--bucket", bucket, "--endpoint-url", moto_url, "--region", "us-east-1", *map(str, args)]


def publish_args(moto_url: str, bucket: str, paths: dict[str, Path], *extra: str) -> list[str]:
    return [
        "publish",
        *cli(
            moto_url,
            bucket,
            "--solution",
            "movies",
            "--recipe",
            "USER_PERSONALIZATION",
            "--item-ids",
            paths["item_ids"],
            "--item-factors",
            paths["item_factors"],
            "--user-ids",
            paths["user_ids"],
            "--user-factors",
            paths["user_factors"],
            "--interactions",
            paths["interactions"],
            *extra,
        ),
    ]


def test_publish_and_switch_a_campaign(
    tmp_path: Path, moto_url: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given embeddings on disk
    paths = write_inputs(tmp_path, random_model(40, 10, 8))
    # When the CLI publishes them with a campaign
    assert main(publish_args(moto_url, bucket, paths, "--campaign", "movies-for-you")) == 0
    first = json.loads(capsys.readouterr().out)
    # Then the version, its manifest and the campaign pointer are in S3
    assert first["campaignArn"] == "arn:aws:personalize:us-east-1:123456789012:campaign/movies-for-you"
    assert (first["items"], first["users"], first["dimensions"]) == (40, 10, 8)
    keys = all_keys(s3, bucket)
    assert "campaigns/movies-for-you.json" in keys
    version = first["solutionVersionArn"].rsplit("/", 1)[1]
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"solutions/movies/{version}/manifest.json")["Body"].read()
    )
    assert manifest["recipe"] == "USER_PERSONALIZATION"
    popularity = np.load(
        __import__("io").BytesIO(
            s3.get_object(Bucket=bucket, Key=f"solutions/movies/{version}/popularity.npy")["Body"].read()
        )
    )
    assert popularity[:7].tolist() == [15, 15, 14, 14, 14, 14, 14]
    assert popularity[7:].sum() == 0

    # When a second version is published and the campaign switched to it
    np.save(paths["item_factors"], random_model(40, 10, 8, seed=1)["item_factors"])
    assert main(publish_args(moto_url, bucket, paths)) == 0
    second = json.loads(capsys.readouterr().out)["solutionVersionArn"]
    assert (
        main(
            ["campaign", *cli(moto_url, bucket, "--name", "movies-for-you", "--solution-version-arn", second)]
        )
        == 0
    )
    pointer = json.loads(s3.get_object(Bucket=bucket, Key="campaigns/movies-for-you.json")["Body"].read())
    assert pointer["solutionVersionArn"] == second
    # And the same inputs again are refused: versions are immutable
    assert main(publish_args(moto_url, bucket, paths)) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["versions", *cli(moto_url, bucket)]) == 0
    assert len(json.loads(capsys.readouterr().out)["solutionVersions"]) == 2


def test_user_ids_from_a_txt_file_are_paged_as_a_list_of_them_is(
    tmp_path: Path, moto_url: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same users as a JSON list (read as strings) and as a .txt (read as bytes, checked
    # with numpy), with their factors mapped from the .npy, not read
    model = random_model(40, 300, 8)
    model["user_ids"] = [f"user-{u}-ü" for u in range(300)]
    paths = write_inputs(tmp_path, model)
    as_text = tmp_path / "users.txt"
    as_text.write_text("\n".join(model["user_ids"]) + "\n", "utf-8")
    # When both are published
    assert main(publish_args(moto_url, bucket, paths)) == 0
    from_json = json.loads(capsys.readouterr().out)
    assert main(publish_args(moto_url, bucket, {**paths, "user_ids": as_text}, "--solution", "again")) == 0
    from_text = json.loads(capsys.readouterr().out)
    # Then they are one content-addressed version: the same files, byte for byte
    assert from_json["users"] == from_text["users"] == 300
    version = from_text["solutionVersionArn"].rsplit("/", 1)[1]
    assert from_json["solutionVersionArn"].rsplit("/", 1)[1] == version
    keys = all_keys(s3, bucket)
    assert f"solutions/again/{version}/user_pages/000000.bin" in keys
    assert f"solutions/again/{version}/user_factors.npy" not in keys  # (the layout before pages)
    assert f"solutions/again/{version}/user_ids.txt" not in keys
    # ...and a .txt with a duplicate user is refused, naming it
    as_text.write_text("a\nb\na\n" + "\n".join(f"x{i}" for i in range(297)), "utf-8")
    assert main(publish_args(moto_url, bucket, {**paths, "user_ids": as_text}, "--solution", "dup")) == 2
    assert "duplicate id 'a'" in capsys.readouterr().err


def _nan(paths: dict[str, Path]) -> None:
    factors = np.load(paths["item_factors"])
    factors[3, 2] = np.nan
    np.save(paths["item_factors"], factors)


REFUSALS = {
    "mismatched rows": (lambda p: np.save(p["item_factors"], np.ones((39, 8), np.float32)), "39 rows"),
    "mismatched dims": (lambda p: np.save(p["user_factors"], np.ones((10, 7), np.float32)), "7 dimensions"),
    "NaN": (_nan, "NaN"),
    "inf": (lambda p: np.save(p["user_factors"], np.full((10, 8), np.inf, np.float32)), "infinite"),
    "overflowing float64": (lambda p: np.save(p["item_factors"], np.full((40, 8), 1e300)), "infinite"),
    "duplicate ids": (
        lambda p: p["item_ids"].write_text("a\nb\na\n" + "\n".join(f"x{i}" for i in range(37))),
        "duplicate id 'a'",
    ),
    "empty catalog": (lambda p: p["item_ids"].write_text(""), "item ids is empty"),
    "integer dtype": (lambda p: np.save(p["item_factors"], np.ones((40, 8), np.int64)), "floats, not int64"),
    "1-d factors": (lambda p: np.save(p["item_factors"], np.ones(40, np.float32)), "2-dimensional"),
    "not npy": (lambda p: p["item_factors"].write_text("hello"), "not a readable .npy"),
    "no ITEM_ID column": (lambda p: p["interactions"].write_text("USER_ID,ITEM\nu,i\n"), "ITEM_ID column"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_upload_nothing(
    case: str, tmp_path: Path, moto_url: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given inputs with one flaw
    paths = write_inputs(tmp_path, random_model(40, 10, 8))
    spoil, message = REFUSALS[case]
    spoil(paths)
    # When the CLI is asked to publish them
    code = main(publish_args(moto_url, bucket, paths, "--campaign", "c"))
    # Then it exits 2 with a message saying what is wrong, and the bucket is untouched
    assert code == 2
    assert message in capsys.readouterr().err
    assert all_keys(s3, bucket) == []


def test_bad_names_are_refused(
    tmp_path: Path, moto_url: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path, random_model(5, 2, 2))
    args = publish_args(moto_url, bucket, paths)
    args[args.index("movies")] = "../escape"
    assert main(args) == 2
    assert "solution '../escape'" in capsys.readouterr().err
    assert all_keys(s3, bucket) == []


def test_popular_items_needs_popularity(
    tmp_path: Path, moto_url: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path, random_model(5, 2, 2))
    args = [
        "publish",
        *cli(
            moto_url,
            bucket,
            "--solution",
            "pop",
            "--recipe",
            "POPULAR_ITEMS",
            "--item-ids",
            paths["item_ids"],
        ),
    ]
    assert main(args) == 2
    assert "needs popularity" in capsys.readouterr().err
    assert main([*args, "--interactions", str(paths["interactions"])]) == 0
