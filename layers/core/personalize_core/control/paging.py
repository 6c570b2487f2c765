"""The one nextToken codec of the control plane's List operations.

A token is the position after the last record of a page, bound to the listing it came from
(``listing``: a bucket prefix, a filter on the list). Anything that was not issued for the same
listing is InvalidNextTokenException: a token is never trusted as a key to read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from typing import Any

from personalize_core.edge.fields import Fields
from personalize_core.errors import InvalidNextTokenException
from personalize_core.observability import logger

MAX_RESULTS = 100
NEXT_TOKEN_MAX = 1500


def encode_token(listing: str, position: dict[str, str]) -> str:
    raw = {"l": listing, "p": position}
    return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode()


def decode_token(token: str, listing: str, valid: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    """The position a token stands for, if it was issued for ``listing`` and ``valid`` accepts it."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        position = raw["p"]
        if raw["l"] != listing or not isinstance(position, dict):
            raise ValueError("a token of another listing")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in position.items()):
            raise ValueError("not a position")
        if not valid(position):
            raise ValueError("not a position of this listing")
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidNextTokenException("The nextToken is not valid for this request") from None
    return position


class PageRequest:
    """``nextToken`` and ``maxResults`` of a List request."""

    def __init__(self, fields: Fields) -> None:
        self.token = fields.string("nextToken", max_len=NEXT_TOKEN_MAX) or None
        self.max_results = fields.integer("maxResults", minimum=1, maximum=MAX_RESULTS) or MAX_RESULTS


def key_page(
    keys: Callable[[str], Iterable[str]],
    prefix: str,
    page: PageRequest,
    load: Callable[[str], dict[str, Any] | None],
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of records stored under ``prefix`` (in key order), and the next page's token.

    ``keys(start_after)`` lists the keys; ``load(key)`` gives a key's summary, or None to skip it.
    """
    start = ""
    if page.token is not None:
        start = decode_token(page.token, prefix, lambda p: p.get("k", "").startswith(prefix))["k"]
    items: list[dict[str, Any]] = []
    last = ""
    for key in keys(start):
        item = load(key)
        if item is None:
            continue
        if len(items) == page.max_results:
            return items, encode_token(prefix, {"k": last})  # there is at least one more
        items.append(item)
        last = key
    return items, None


def skipped(key: str, error: Exception) -> None:
    """Log a record a List leaves out because it cannot be read (one bad object never fails a list)."""
    logger.error("an unreadable record is left out of a list", extra={"key": key, "reason": str(error)})


def paged(name: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    """A List answer: ``{name: items}``, with ``nextToken`` when there is another page."""
    return {name: items, **({"nextToken": token} if token else {})}
