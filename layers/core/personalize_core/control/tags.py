"""Tags on a Create request: checked against botocore's limits, never stored (nothing reads them)."""

from __future__ import annotations

import re

from personalize_core.edge.fields import Fields
from personalize_core.errors import InvalidInputException, TooManyTagsException

TAGS_MAX = 200
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
# botocore's ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$ (letters, separators, numbers, and _.:/=+-@).
TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")


def check_tags(fields: Fields) -> None:
    tags = fields.body.get("tags")
    if tags is None:
        return
    if not isinstance(tags, list):
        raise InvalidInputException("tags must be a list")
    if len(tags) > TAGS_MAX:
        raise TooManyTagsException(f"tags may have at most {TAGS_MAX} entries")
    for i, raw in enumerate(tags):
        tag = Fields(raw, f"tags[{i}].", frozenset({"tagKey", "tagValue"}))
        tag.string("tagKey", max_len=TAG_KEY_MAX, min_len=1, required=True, pattern=TAG_TEXT)
        tag.string("tagValue", max_len=TAG_VALUE_MAX, required=True, pattern=TAG_TEXT)
