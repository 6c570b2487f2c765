"""Compact ids against a plain list and dict: same answers, collisions and duplicates handled."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_core.errors import ArtifactError
from personalize_core.modelstore import ids as ids_module
from personalize_core.modelstore.ids import load_ids

ID_TEXT = st.text(
    st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), min_size=1, max_size=12
)


def check_against_plain(values: list[str], unknown: list[str]) -> None:
    # When the ids are loaded compactly
    by_index, by_id = load_ids("\n".join(values).encode("utf-8"), len(values), "item ids")
    # Then every id is where the plain list has it, and found where the plain dict finds it
    plain = {value: i for i, value in enumerate(values)}
    assert len(by_index) == len(by_id) == len(values)
    assert [by_index[i] for i in range(len(values))] == values
    assert list(by_index) == values
    assert list(by_id) == values
    for value, index in plain.items():
        assert by_id.get(value) == index
        assert by_id[value] == index
        assert value in by_id
    for value in unknown:
        if value not in plain:
            assert by_id.get(value) is None
            assert value not in by_id
            with pytest.raises(KeyError):
                by_id[value]


@settings(max_examples=200, deadline=None)
@given(values=st.lists(ID_TEXT, min_size=1, max_size=60, unique=True), unknown=st.lists(ID_TEXT, max_size=10))
def test_matches_a_list_and_a_dict(values: list[str], unknown: list[str]) -> None:
    check_against_plain(values, unknown)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(ID_TEXT, min_size=1, max_size=60, unique=True), unknown=st.lists(ID_TEXT, max_size=10))
def test_matches_a_list_and_a_dict_when_every_hash_collides(values: list[str], unknown: list[str]) -> None:
    # Given a hash with a handful of values: most ids share theirs with others
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ids_module, "id_hash", lambda text: len(text) % 3)
        check_against_plain(values, unknown)


@pytest.mark.parametrize("weak_hash", [False, True])
@pytest.mark.parametrize("values", [["a", "b", "a"], ["x", "é", "y", "z", "é"], ["", "q", ""]])
def test_duplicates_are_refused(values: list[str], weak_hash: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if weak_hash:
        monkeypatch.setattr(ids_module, "id_hash", lambda text: 7)
    with pytest.raises(ArtifactError, match="item ids are not unique"):
        load_ids("\n".join(values).encode(), len(values), "item ids")


def test_count_and_encoding_are_checked() -> None:
    with pytest.raises(ArtifactError, match="has 2 ids, the manifest says 3"):
        load_ids(b"a\nb", 3, "item ids")
    with pytest.raises(ArtifactError, match="not UTF-8"):
        load_ids(b"a\n\xff", 2, "item ids")
    assert len(load_ids(b"", 0, "item ids")[0]) == 0


def test_indexing_a_list_out_of_range_fails_like_a_list() -> None:
    by_index, _ = load_ids(b"a\nb\nc", 3, "item ids")
    assert by_index[-1] == "c"
    assert by_index[0:2] == ["a", "b"]
    with pytest.raises(IndexError):
        by_index[3]


@settings(max_examples=50, deadline=None)
@given(st.lists(ID_TEXT, min_size=1, max_size=40, unique=True), st.lists(ID_TEXT, max_size=10))
def test_a_published_index_answers_as_one_computed_at_load(values: list[str], unknown: list[str]) -> None:
    # Given the index a publisher writes for the ids (computed in another process, in effect)
    data = "\n".join(values).encode("utf-8")
    published = ids_module.hash_index(ids_module.CompactIds(data, len(values)))
    # When the ids are loaded with it
    _, by_id = load_ids(data, len(values), "item ids", published)
    # Then every id and every unknown one is answered as a plain dict would
    for index, value in enumerate(values):
        assert by_id.get(value) == index
    for value in unknown:
        assert by_id.get(value) == ({v: i for i, v in enumerate(values)}.get(value))


def test_a_published_index_that_does_not_fit_its_ids_is_refused() -> None:
    data = b"a\nb\nc"
    good = ids_module.hash_index(ids_module.CompactIds(data, 3))
    unsorted = good[:, ::-1].copy()
    out_of_range = good.copy()
    out_of_range[1, 0] = 3
    for bad in (good[:, :2].copy(), good.astype("int64"), unsorted, out_of_range):
        with pytest.raises(ArtifactError, match="index of the item ids"):
            load_ids(data, 3, "item ids", bad)


def test_hashes_one_apart_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two ids whose hashes differ in the last bit, below 2**63 (a float64 holds 53 bits:
    # searched as a float64, both look the same)
    hashes = {b"a": 2**62, b"b": 2**62 + 1}
    monkeypatch.setattr(ids_module, "id_hash", lambda raw: hashes.get(raw, 0))
    _, index = load_ids(b"a\nb", 2, "item ids")
    # Then each is found at its own index
    assert index.get("b") == 1
    assert index.get("a") == 0
