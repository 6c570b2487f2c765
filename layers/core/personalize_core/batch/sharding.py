"""Splitting JSON Lines input into shards by byte ranges, without reading it first.

Shard ``s`` of a file owns the lines that *start* in ``[s*size, (s+1)*size)``. It reads from one
byte before its start: if that byte is a newline a line starts exactly at the boundary, otherwise
the first (partial) line belongs to the shard before. A line crossing the end is read to its end.
So every line belongs to exactly one shard, and the shards' outputs, concatenated in order, are
the lines in input order — whatever the line lengths, and without a planning pass over the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def shard_count(size: int, shard_bytes: int) -> int:
    """How many shards a file of ``size`` bytes has (at least one, so an empty file still gets its .out)."""
    return max(1, -(-size // shard_bytes))


def read_start(shard: int, shard_bytes: int) -> int:
    """Where shard ``shard`` starts reading (one byte early, to see whether a line starts at its edge)."""
    return max(0, shard * shard_bytes - 1)


def owned_lines(chunks: Iterable[bytes], shard: int, shard_bytes: int) -> Iterator[bytes]:
    """The lines shard ``shard`` owns, given the file's bytes from ``read_start(shard, shard_bytes)`` on.

    Lines are returned without their line ending; the caller decides what a blank line means.
    """
    start, end = shard * shard_bytes, (shard + 1) * shard_bytes
    offset = read_start(shard, shard_bytes)  # file offset of buffer[0]
    buffer = b""
    skip_first = shard > 0  # the piece up to the first newline belongs to the shard before
    for chunk in chunks:
        buffer += chunk
        position = 0
        while (newline := buffer.find(b"\n", position)) >= 0:
            line_start = offset + position
            if skip_first:
                skip_first = False
            elif line_start >= end:
                return
            else:
                yield buffer[position:newline].rstrip(b"\r")
            position = newline + 1
        offset += position
        buffer = buffer[position:]
        if offset >= end and not skip_first:
            return  # everything owned has been seen; stop reading early
    if buffer and not skip_first and offset < end and offset >= start:
        yield buffer.rstrip(b"\r")  # the last line of a file without a final newline
