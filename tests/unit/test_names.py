"""ARNs and names: only well-formed names ever become S3 keys."""

from __future__ import annotations

import pytest

from personalize_core.arns import make_arn, parse_arn
from personalize_core.errors import InvalidInputException


def test_parse_campaign_and_solution_version_arns() -> None:
    arn = parse_arn("arn:aws:personalize:eu-west-1:111122223333:campaign/movies-1", "campaignArn", "campaign")
    assert (arn.region, arn.account, arn.path) == ("eu-west-1", "111122223333", ("movies-1",))
    version = parse_arn("arn:aws:personalize:us-east-1:1:solution/movies/abc123", "x", "solution", parts=2)
    assert version.path == ("movies", "abc123")
    assert str(version) == "arn:aws:personalize:us-east-1:1:solution/movies/abc123"


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:personalize:us-east-1:1:campaign/../secrets",
        "arn:aws:personalize:us-east-1:1:campaign/a/b",
        "arn:aws:personalize:us-east-1:1:campaign/",
        "arn:aws:personalize:us-east-1:1:campaign/-leading-dash",
        "arn:aws:personalize:us-east-1:1:filter/movies",
        "arn:aws:s3:::bucket/key",
        "arn:aws:personalize:us-east-1:1:campaign/" + "a" * 64,
        "arn:aws:personalize:us-east-1:1:campaign/a b",
    ],
)
def test_refuses_anything_that_is_not_a_plain_name(value: str) -> None:
    with pytest.raises(InvalidInputException, match="campaignArn"):
        parse_arn(value, "campaignArn", "campaign")


def test_partition_follows_the_region() -> None:
    assert str(make_arn("cn-north-1", "1", "campaign", "c")).startswith("arn:aws-cn:")
    assert str(make_arn("us-east-1", "1", "campaign", "c")).startswith("arn:aws:")
