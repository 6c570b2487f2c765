"""Resource names and ARNs. Every name that becomes part of an S3 key passes through here."""

from __future__ import annotations

import re
from typing import NamedTuple

from personalize_core.errors import InvalidInputException

#: Personalize's own name rule (jobs, campaigns, filters, solutions, promotions).
NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*")
NAME_MAX = 63
#: botocore's Arn shape.
ARN_PATTERN = re.compile(r"arn:([a-z\d-]+):personalize:.*:.*:.+")
ARN_MAX = 256
_ARN_PARTS = re.compile(
    r"arn:(?P<partition>[a-z\d-]+):personalize:(?P<region>[^:]*):(?P<account>[^:]*):(?P<resource>.+)"
)


def is_valid_name(name: str) -> bool:
    return 0 < len(name) <= NAME_MAX and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: str, field: str) -> str:
    if not is_valid_name(name):
        raise InvalidInputException(
            f"{field} {name!r} must be 1-{NAME_MAX} characters of [a-zA-Z0-9-_], "
            "starting with a letter or digit"
        )
    return name


class Arn(NamedTuple):
    partition: str
    region: str
    account: str
    resource_type: str
    #: The path after the resource type: a name, or ``<solution>/<version>`` for solution versions.
    path: tuple[str, ...]

    def __str__(self) -> str:
        return f"arn:{self.partition}:personalize:{self.region}:{self.account}:" + "/".join(
            (self.resource_type, *self.path)
        )


def parse_arn(value: str, field: str, resource_type: str, parts: int = 1) -> Arn:
    """Parse a Personalize ARN of one resource type; every path part must be a valid name.

    Anything else is an InvalidInputException naming ``field``: an ARN never reaches an S3 key unchecked.
    """
    match = _ARN_PARTS.fullmatch(value) if len(value) <= ARN_MAX else None
    if match is None:
        raise InvalidInputException(f"{field} {value!r} is not a valid Personalize ARN")
    kind, _, rest = match["resource"].partition("/")
    path = tuple(rest.split("/")) if rest else ()
    if kind != resource_type or len(path) != parts or not all(is_valid_name(p) for p in path):
        expected = "/".join([resource_type] + ["<name>"] * parts)
        raise InvalidInputException(f"{field} {value!r} is not a {resource_type} ARN (…:{expected})")
    return Arn(match["partition"], match["region"], match["account"], kind, path)


def make_arn(region: str, account: str, resource_type: str, *path: str) -> Arn:
    partition = (
        "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    )
    return Arn(partition, region, account, resource_type, tuple(path))
