"""User pages (issue 19): written from ids and a matrix, found again one user at a time, checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from personalize_core.errors import ModelUnavailableError
from personalize_core.modelstore import ids as id_module
from personalize_core.modelstore import user_writer
from personalize_core.modelstore.inputs import PublishError
from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.modelstore.layout import FileEntry
from personalize_core.modelstore.npy import decode_npy
from personalize_core.modelstore.objects import ObjectMissing
from personalize_core.modelstore.page_layout import user_page_file
from personalize_core.modelstore.user_pages import PageIndex, UserPageError, hash_of, page_bounds
from personalize_core.modelstore.user_writer import WrittenUsers, write_user_pages
from personalize_core.modelstore.users import PagedUsers, UserCache
from personalize_core.serving import normalisers
from personalize_core.serving.scoring import log_normalisers as float64_reference

DIMS = 8


def factors(users: int, items: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0, 0.5, (users, DIMS)).astype(np.float32),
        rng.normal(0, 0.5, (items, DIMS)).astype(np.float32),
    )


class Files:
    """Written pages served as ranged reads, recorded; tests break them on purpose."""

    def __init__(self, written: WrittenUsers) -> None:
        self.data = {name: path.read_bytes() for name, path in written.files.items()}
        self.reads: list[tuple[str, int, int]] = []
        self.fault: Exception | None = None

    def read_range(self, name: str, start: int, length: int) -> bytes:
        self.reads.append((name, start, length))
        if self.fault is not None:
            raise self.fault
        if name not in self.data:
            raise ObjectMissing(name)
        return self.data[name][start : start + length]


def paged(
    written: WrittenUsers,
    files: Files,
    cache: UserCache | None = None,
    normalise: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PagedUsers:
    pages = written.pages
    table = decode_npy(written.index_file, FileEntry("", len(written.index_file)))
    index = PageIndex(table, pages.pages_per_file, pages.size)
    return PagedUsers(
        "arn:v", index, DIMS, files.read_range, cache if cache is not None else UserCache(1000), normalise, 4
    )


def test_every_user_is_found_with_their_vector_and_row_and_others_are_not(tmp_path: Path) -> None:
    # Given 3,000 users (ids with non-ASCII characters) written as pages of 2,048 (d = 8)
    users, items = factors(3000)
    user_ids = [f"user-{u}-é" for u in range(3000)]
    written = write_user_pages(user_ids, users, items, tmp_path)
    files = Files(written)
    store = paged(written, files)
    # Then the pages hold them all, in files named as the layout says
    assert written.users == 3000
    assert written.pages.pages == 2
    assert set(files.data) == {user_page_file(0)}
    for u in (0, 1, 1234, 2999):
        stored = store.get(user_ids[u])
        assert stored is not None
        assert stored.row == u
        np.testing.assert_array_equal(stored.vector, users[u])
        assert not stored.vector.flags.writeable
    # ...an id that is not there is None, after one read of the page its hash points to
    reads = len(files.reads)
    assert store.get("user-1-e") is None
    assert len(files.reads) == reads + 1
    # ...and the cold-user vector is the users' mean, with its exact normaliser
    mean = users.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(written.cold_user[:-1], mean, rtol=1e-12)
    assert written.cold_user[-1] == pytest.approx(float64_reference(items, mean[None, :])[0], rel=1e-13)


def test_a_miss_is_one_read_a_hit_none_and_the_lru_evicts_the_least_recently_used(tmp_path: Path) -> None:
    users, items = factors(500)
    written = write_user_pages([f"u{u}" for u in range(500)], users, items, tmp_path)
    files = Files(written)
    cache = UserCache(2)
    store = paged(written, files, cache)
    # A miss reads one page, once; a hit reads nothing
    store.get("u1")
    assert len(files.reads) == 1
    store.get("u1")
    assert len(files.reads) == 1
    # Two more users: u1 was used less recently than u2 after u1 is asked again, so u2 goes
    store.get("u2")
    store.get("u1")
    store.get("u3")
    assert len(cache) == 2
    reads = len(files.reads)
    store.get("u1")
    assert len(files.reads) == reads  # still cached
    first = store.get("u2")  # evicted: read again, the same vector
    assert len(files.reads) == reads + 1
    assert first is not None
    np.testing.assert_array_equal(first.vector, users[2])
    assert (cache.hits, cache.misses) == (3, 4)


def test_equal_hashes_never_straddle_pages_and_are_told_apart_by_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a hash so weak that thousands of ids share each value (runs longer than a page)
    monkeypatch.setattr(id_module, "id_hash", lambda raw: len(raw) % 3)
    users, items = factors(4000)
    user_ids = [f"u{u}" for u in range(4000)]
    written = write_user_pages(user_ids, users, items, tmp_path)
    store = paged(written, Files(written))
    # Then every user is still found, in the one page of their hash
    for u in range(0, 4000, 97):
        stored = store.get(user_ids[u])
        assert stored is not None
        assert stored.row == u
    assert page_bounds(np.array([1, 1, 1, 2, 2, 3], dtype=np.uint64), 2) == [(0, 3), (3, 5), (5, 6)]


def test_get_many_reads_each_page_file_once_and_gives_what_get_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 20,000 users in pages of 2,048, 4 pages a file (three files)
    monkeypatch.setattr(user_writer, "PAGES_PER_FILE", 4)
    users, items = factors(20_000)
    written = write_user_pages([f"u{u}" for u in range(20_000)], users, items, tmp_path)
    files = Files(written)
    normalise = lambda vectors: normalisers.log_normalisers(items, vectors)  # noqa: E731
    store = paged(written, files, normalise=normalise)
    asked = [f"u{u}" for u in range(0, 20_000, 37)] + ["nobody"]
    # When a batch asks for 541 of them at once
    many = store.get_many(asked)
    # Then each file was read once (a range over the pages wanted), and the answers are get's
    assert len(written.files) == 3
    assert sorted(name for name, _, _ in files.reads) == sorted(written.files)
    assert many["nobody"] is None
    single = paged(written, Files(written), normalise=normalise)
    for user_id in asked[:-1]:
        one = single.get(user_id)
        assert one is not None
        batch = many[user_id]
        assert batch is not None
        np.testing.assert_array_equal(batch.vector, one.vector)
        assert batch.row == one.row
        assert batch.log_normaliser == pytest.approx(one.log_normaliser, rel=1e-14)


def test_far_apart_pages_are_separate_reads_and_near_ones_one(tmp_path: Path) -> None:
    # Given 30,000 users in 15 pages of one file
    users, items = factors(30_000)
    user_ids = [f"u{u}" for u in range(30_000)]
    written = write_user_pages(user_ids, users, items, tmp_path)
    files = Files(written)
    store = paged(written, files)
    on_page: dict[int, str] = {}
    for user_id in user_ids:
        on_page.setdefault(store.index.page_of(hash_of(user_id)[1]), user_id)
    # When a batch wants pages 0, 3 (two pages between: one read) and 9 (too far: a read of its own)
    store.get_many([on_page[0], on_page[3], on_page[9]])
    # Then two ranged reads: pages 0-3 and page 9
    spans = [store.index.span(p) for p in (0, 3, 9)]
    assert sorted((start, length) for _, start, length in files.reads) == [
        (spans[0].offset, spans[1].offset + spans[1].length - spans[0].offset),
        (spans[2].offset, spans[2].length),
    ]


@pytest.mark.parametrize(
    ("fault", "expected", "message"),
    [
        ("flip", UserPageError, "does not match its CRC-32"),
        ("truncate", UserPageError, "does not match its CRC-32"),
        ("delete", UserPageError, "does not exist"),
        ("network", ModelUnavailableError, "cannot be read now"),
    ],
)
def test_a_broken_page_is_a_clear_error_naming_it(
    tmp_path: Path, fault: str, expected: type[Exception], message: str
) -> None:
    users, items = factors(100)
    written = write_user_pages([f"u{u}" for u in range(100)], users, items, tmp_path)
    files = Files(written)
    name = user_page_file(0)
    if fault == "flip":
        data = bytearray(files.data[name])
        data[len(data) // 2] ^= 1
        files.data[name] = bytes(data)
    elif fault == "truncate":
        files.data[name] = files.data[name][:-10]
    elif fault == "delete":
        del files.data[name]
    else:
        files.fault = ConnectionResetError("reset by peer")
    with pytest.raises(expected, match=message) as caught:
        paged(written, files).get("u5")
    assert f"user page 0 ({name}) of arn:v" in str(caught.value)


def test_pages_from_an_mmapped_npy_are_the_pages_of_the_array(tmp_path: Path) -> None:
    # Given the same users in memory and in a .npy mapped from disk (float64, converted per block)
    users, items = factors(5000)
    path = tmp_path / "users.npy"
    on_disk = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=users.shape)
    on_disk[:] = users
    on_disk.flush()
    mapped = np.load(path, mmap_mode="r")
    ids = [f"u{u}" for u in range(5000)]
    # Then both give the same page bytes (the fingerprint of a content-addressed version)
    from_memory = write_user_pages(ids, users, items, tmp_path / "a")
    from_disk = write_user_pages("\n".join(ids).encode(), mapped, items, tmp_path / "b")
    assert from_memory.pages == from_disk.pages
    assert from_memory.index_file == from_disk.index_file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a\nb\na", "duplicate id 'a'"),
        (b"a\n\nb", r"user ids\[1\] '' must be"),
        (b"a\nb\r\nc", r"user ids\[1\] 'b\\r' must be"),
        ("a\n" + "é" * 257, r"user ids\[1\]"),
        (b"a\n\xff", "not UTF-8"),
    ],
)
def test_ids_given_as_text_are_checked_like_a_list(tmp_path: Path, text: bytes | str, message: str) -> None:
    raw = text.encode() if isinstance(text, str) else text
    users, items = factors(raw.count(b"\n") + 1)
    with pytest.raises(PublishError, match=message):
        write_user_pages(raw, users, items, tmp_path)


def test_ids_of_256_characters_in_more_bytes_are_accepted(tmp_path: Path) -> None:
    users, items = factors(2)
    written = write_user_pages(("a\n" + "é" * 256).encode(), users, items, tmp_path)
    assert written.users == 2


def test_a_matrix_that_does_not_fit_or_holds_nan_is_refused(tmp_path: Path) -> None:
    users, items = factors(10)
    with pytest.raises(PublishError, match="has 10 rows but there are 9 ids"):
        write_user_pages([f"u{u}" for u in range(9)], users, items, tmp_path)
    users[7, 3] = np.nan
    with pytest.raises(PublishError, match="NaN"):
        write_user_pages([f"u{u}" for u in range(10)], users, items, tmp_path)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("blocks", [1, 4])
def test_normalisers_are_the_float64_formulas_without_a_float64_catalog(
    monkeypatch: pytest.MonkeyPatch, blocks: int, compiled: bool
) -> None:
    # Given steps of one item block (1,024 items: the catalog's last block is ragged) or four (the
    # whole catalog at once), users in groups of 5, the planes joined by the compiled kernel or numpy
    monkeypatch.setattr(normalisers, "_BLOCKS_PER_STEP", blocks)
    if not compiled:
        monkeypatch.setattr(normalisers.native, "kernels", lambda: None)
    else:
        assert normalisers.native.kernels() is not None, "the kernels are not built: make native (needs cc)"
    monkeypatch.setattr(normalisers, "_USER_BLOCK", 5)
    users, items = factors(13, items=2500, seed=3)
    laid_out = ItemMatrix.from_matrix(items)  # the layout a loaded model serves
    expected = float64_reference(items, users)
    # Then batched and one at a time agree with the plain float64 product to the last bits
    np.testing.assert_allclose(normalisers.log_normalisers(laid_out, users), expected, rtol=1e-14)
    assert normalisers.log_normaliser(laid_out, users[4]) == pytest.approx(expected[4], rel=1e-14)
