"""Text that can always be written back: invalid Unicode is refused at the edge, and JSON out never fails.

JSON's ``\\uXXXX`` escapes can spell a lone UTF-16 surrogate (``"\\ud800"``), which Python's
``json`` decodes into a ``str`` that has no UTF-8 form. Echoed into an answer (an unknown field's
name, a ranking's ``inputList``) or stored in a record, it made every later response that held it
impossible to encode. So:

- ``check_text(body)`` finds the first such string in a request, key or value, and raises an
  InvalidInputException naming its field (``inputList[2]``, ``campaignConfig.itemExplorationConfig``,
  ``a field name of context``). Every route calls it through ``edge.api.json_body``; batch lines call
  it too. A cheap scan of the raw bytes skips the walk for the bodies that have no such escape.
- ``dumps(value)`` writes JSON as UTF-8-safe text whatever the value holds: records stored before
  this check (and so still holding such strings) are described with ``\\ud800`` escapes instead of
  failing to serialise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from personalize_core.errors import InvalidInputException

#: A JSON escape of a UTF-16 surrogate (a high one; a low one always follows one, paired or not).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def may_hold_surrogates(raw: bytes) -> bool:
    """False when JSON text ``raw`` certainly decodes to no surrogate (the fast path)."""
    return _SURROGATE_ESCAPE.search(raw) is not None


def _bad(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def invalid_text_field(value: Any) -> str | None:
    """The field (as a request spells it) of the first string holding a lone surrogate, or None."""
    # Iterative: json.loads accepts nesting deeper than Python's recursion limit allows a walk.
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if _bad(node):
                return where or "the request body"
        elif isinstance(node, dict):
            for key, item in reversed(node.items()):
                if _bad(key):
                    return f"a field name of {where or 'the request body'}"
                stack.append((item, _join(where, key[:60])))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in reversed(list(enumerate(node))))
    return None


def check_text(value: Any) -> None:
    """Refuse a parsed JSON value that holds a string with no UTF-8 form (a lone surrogate)."""
    field = invalid_text_field(value)
    if field is not None:
        raise InvalidInputException(
            f"{field} is not valid Unicode: it holds an unpaired UTF-16 surrogate (e.g. \\ud800)"
        )


def dumps(
    value: Any,
    *,
    separators: tuple[str, str] | None = (",", ":"),
    indent: int | None = None,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """JSON text of ``value`` that always encodes as UTF-8: non-ASCII characters are written as
    they are, unless the value holds a lone surrogate, which then goes out as a ``\\uXXXX`` escape."""
    options: dict[str, Any] = {"separators": separators, "indent": indent, "default": default}
    text = json.dumps(value, ensure_ascii=False, **options)
    if not text.isascii() and _bad(text):
        text = json.dumps(value, ensure_ascii=True, **options)
    return text
