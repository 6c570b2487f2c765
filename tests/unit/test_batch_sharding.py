"""Byte-range shards of JSON Lines: every line in exactly one shard, in order, for any shard size."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_core.batch.sharding import owned_lines, read_start, shard_count

line_text = st.text(
    alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(line_text, max_size=30),
    final_newline=st.booleans(),
    shard_bytes=st.integers(min_value=1, max_value=120),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_shards_partition_the_lines_in_order(
    lines: list[str], final_newline: bool, shard_bytes: int, chunk: int
) -> None:
    # Given a file of lines (with or without a final newline), cut into byte-range shards
    data = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it starts no new one

    # When every shard reads from its start, in chunks of any size
    found: list[bytes] = []
    for shard in range(shard_count(len(data), shard_bytes)):
        tail = data[read_start(shard, shard_bytes) :]
        chunks = [tail[i : i + chunk] for i in range(0, len(tail), chunk)]
        found.extend(owned_lines(chunks, shard, shard_bytes))

    # Then the shards' lines, concatenated in shard order, are the file's lines: none lost or repeated
    assert found == expected


def test_windows_line_endings_are_stripped_and_a_shard_stops_reading_early() -> None:
    # Given a long file whose first shard is small
    data = b'{"userId": "1"}\r\n{"userId": "2"}\r\n' + b"x" * 10_000
    consumed: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 8):
            consumed.append(i)
            yield data[i : i + 8]

    # When shard 0 (20 bytes) reads it
    lines = list(owned_lines(chunks(), 0, 20))

    # Then it owns the two lines that start within it, and did not read the whole file
    assert lines == [b'{"userId": "1"}', b'{"userId": "2"}']
    assert len(consumed) < 10
