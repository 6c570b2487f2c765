"""The S3 layout of models: one place that both the publisher and the loader read.

    solutions/<solution>/<version>/manifest.json   written last: a version without it does not exist
    solutions/<solution>/<version>/<array files>   listed with sha256, size, dtype and shape in the manifest
    solutions/<solution>/<version>/user_pages/NNNNNN.bin   the users' vectors, in pages (user_pages.py);
                                                   the manifest sums them up (``UserPages``), the
                                                   page index (a listed file) says where each page is
    campaigns/<campaign>.json                      a pointer to the version it serves (bucket_records.py)

A solution version is immutable; switching a campaign rewrites only its pointer.
"""

from __future__ import annotations

import enum
import hashlib
import mmap
import zlib
from typing import Any, NamedTuple, Protocol

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.page_layout import UserPages

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class Recipe(enum.StrEnum):
    USER_PERSONALIZATION = "USER_PERSONALIZATION"
    RELATED_ITEMS = "RELATED_ITEMS"
    POPULAR_ITEMS = "POPULAR_ITEMS"
    PERSONALIZED_RANKING = "PERSONALIZED_RANKING"

    @property
    def needs_user_factors(self) -> bool:
        return self in (Recipe.USER_PERSONALIZATION, Recipe.PERSONALIZED_RANKING)

    @property
    def needs_item_factors(self) -> bool:
        return self is not Recipe.POPULAR_ITEMS


class ArrayName(enum.StrEnum):
    """The files of a solution version. ``*_IDS`` are UTF-8 text, one id a line; the rest are .npy."""

    ITEM_IDS = "item_ids.txt"
    USER_IDS = "user_ids.txt"
    ITEM_FACTORS = "item_factors.npy"
    USER_FACTORS = "user_factors.npy"
    POPULARITY = "popularity.npy"
    #: Optional (USER_PERSONALIZATION): float64 [users], log Σ_j exp(u·j) over the catalog, computed
    #: at publish time so that serving needs no exp over the catalog. Versions without it still work.
    USER_LOG_NORMALISERS = "user_log_normalisers.npy"
    #: Optional: uint64 [2, ids], the ids' hashes sorted and the index under each (ids.hash_index),
    #: so that a load does not hash every id. Versions without them get them computed at load.
    ITEM_IDS_INDEX = "item_ids.index.npy"
    USER_IDS_INDEX = "user_ids.index.npy"
    #: Optional (user recipes): float64 [d + 1], the cold-user vector (the mean user vector) that
    #: scores users the model does not know, then its log Σ_j exp(v·j). Versions without it get the
    #: mean of their user factors at load, without a stored normaliser.
    COLD_USER = "cold_user.npy"
    #: The page index of the user vectors (user_pages.py: uint64 [4, pages]), whose pages are the
    #: ``user_pages/`` files. Versions published before it hold USER_IDS + USER_FACTORS instead.
    USER_PAGES_INDEX = "user_pages.index.npy"


def version_prefix(solution: str, version: str) -> str:
    return f"solutions/{solution}/{version}/"


def campaign_key(campaign: str) -> str:
    return f"campaigns/{campaign}.json"


def recommender_key(recommender: str) -> str:
    return f"recommenders/{recommender}.json"


def filter_key(name: str) -> str:
    return f"filters/{name}.json"


class FileEntry(NamedTuple):
    sha256: str
    size: int
    #: numpy dtype string and shape for .npy files; None for id lists.
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    #: The .npy holds its array in Fortran (column) order: the item matrix is published that way,
    #: [d, items] in bytes, the layout it is served in. Versions published before are in C order.
    fortran_order: bool = False
    #: CRC-32 of the file (8 hex digits), what a load checks: ~4x cheaper than SHA-256, as good at
    #: catching a corrupt or mixed-up file. None in versions published before: SHA-256 is checked.
    crc32: str | None = None
    #: How the array's values are laid out, when not as its dtype and shape say: the item matrix
    #: is published as ``item_matrix.LAYOUT`` (two bfloat16-half planes). None in versions before.
    layout: str | None = None

    @property
    def checksum(self) -> str:
        """The digest a load checks the file against (``running_checksum`` computes it)."""
        return self.crc32 if self.crc32 is not None else self.sha256

    def running_checksum(self) -> RunningChecksum:
        """An empty digest of the kind ``checksum`` is, to feed the file's bytes to in order."""
        return RunningCrc32() if self.crc32 is not None else hashlib.sha256()

    def matches(self, data: bytes | memoryview | bytearray | mmap.mmap) -> bool:
        """``data`` is this file: its size and checksum."""
        if len(data) != self.size:
            return False
        digest = self.running_checksum()
        digest.update(data)
        return digest.hexdigest() == self.checksum

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sha256": self.sha256, "bytes": self.size}
        if self.crc32 is not None:
            out["crc32"] = self.crc32
        if self.dtype is not None:
            out["dtype"] = self.dtype
            out["shape"] = list(self.shape or ())
        if self.fortran_order:
            out["order"] = "F"
        if self.layout is not None:
            out["layout"] = self.layout
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FileEntry:
        shape = raw.get("shape")
        crc32 = raw.get("crc32")
        return cls(
            sha256=str(raw["sha256"]),
            size=int(raw["bytes"]),
            dtype=raw.get("dtype"),
            shape=tuple(int(n) for n in shape) if shape is not None else None,
            fortran_order=raw.get("order", "C") == "F",
            crc32=str(crc32) if crc32 is not None else None,
            layout=str(raw["layout"]) if raw.get("layout") is not None else None,
        )


class RunningChecksum(Protocol):
    def update(self, data: bytes | memoryview | bytearray | mmap.mmap, /) -> None: ...
    def hexdigest(self) -> str: ...


class RunningCrc32:
    """zlib's CRC-32 with hashlib's interface (zlib lets go of the GIL on large buffers too)."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview | bytearray | mmap.mmap, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return crc32_hex(self.value)


def crc32_hex(value: int) -> str:
    return f"{value:08x}"


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_ids(ids: list[str]) -> bytes:
    return "\n".join(ids).encode("utf-8")


def decode_ids(data: bytes, expected: int) -> list[str]:
    ids = data.decode("utf-8").split("\n") if data else []
    if len(ids) != expected:
        raise ArtifactError(f"id list has {len(ids)} ids, the manifest says {expected}")
    return ids


class FoldIn(NamedTuple):
    """How a user's events fold into a vector of this version (serving/foldin.py): implicit ALS's
    confidence c = alpha * (sum of the events' weights on an item) and its regularization, and the
    solution's event rules (trainer.weigh's, per event). A trained version records its training's;
    a published one gets these defaults."""

    alpha: float = 1.0
    regularization: float = 1.0
    #: (event type in lower case, weight, EVENT_VALUE threshold or None); empty: every type weighs 1.
    weights: tuple[tuple[str, float, float | None], ...] = ()
    #: Events with an EVENT_VALUE below this weigh nothing (solutionConfig.eventValueThreshold).
    value_threshold: float | None = None
    #: The solution's eventType: events of other types weigh nothing (None: every type counts).
    event_type: str | None = None

    def weight(self, event_type: str, value: float | None) -> float:
        """An event's weight, as training weighs an interaction row (0: it does not count)."""
        kind = event_type.lower()
        if self.event_type is not None and kind != self.event_type.lower():
            return 0.0
        weight = 1.0
        if self.weights:
            found = next((w for w in self.weights if w[0] == kind), None)
            if found is None:
                return 0.0
            weight = found[1]
            if found[2] is not None and value is not None and value < found[2]:
                return 0.0
        if self.value_threshold is not None and value is not None and value < self.value_threshold:
            return 0.0
        return weight

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "regularization": self.regularization,
            "weights": [list(w) for w in self.weights],
            "valueThreshold": self.value_threshold,
            "eventType": self.event_type,
        }

    @classmethod
    def from_json(cls, raw: Any) -> FoldIn:
        threshold, event_type = raw.get("valueThreshold"), raw.get("eventType")
        return cls(
            alpha=float(raw["alpha"]),
            regularization=float(raw["regularization"]),
            weights=tuple(
                (str(t).lower(), float(w), None if th is None else float(th)) for t, w, th in raw["weights"]
            ),
            value_threshold=None if threshold is None else float(threshold),
            event_type=None if event_type is None else str(event_type),
        )


DEFAULT_FOLD_IN = FoldIn()


class Manifest(NamedTuple):
    solution_version_arn: str
    solution: str
    version: str
    recipe: Recipe
    num_items: int
    num_users: int
    dimensions: int
    created_at: float
    files: dict[str, FileEntry]
    #: The dataset group the version belongs to (a trained version's); None: a published version,
    #: whose dataset group is its solution (``dataset-group/<solution>``).
    dataset_group_arn: str | None = None
    #: How events fold a user in (None: DEFAULT_FOLD_IN, for versions that do not say).
    fold_in: FoldIn | None = None
    #: The user vectors' pages; None in versions published before them (USER_FACTORS instead) and
    #: in versions without users.
    user_pages: UserPages | None = None

    @property
    def dataset_group(self) -> str:
        """The ARN of the dataset group the version belongs to (filters must come from it)."""
        if self.dataset_group_arn is not None:
            return self.dataset_group_arn
        head, _, _ = self.solution_version_arn.partition(":solution/")
        return f"{head}:dataset-group/{self.solution}"

    def to_json(self) -> dict[str, Any]:
        optional: dict[str, Any] = {}
        if self.dataset_group_arn is not None:
            optional["datasetGroupArn"] = self.dataset_group_arn
        if self.fold_in is not None:
            optional["foldIn"] = self.fold_in.to_json()
        if self.user_pages is not None:
            optional["userPages"] = self.user_pages.to_json()
        return {
            "formatVersion": FORMAT_VERSION,
            "solutionVersionArn": self.solution_version_arn,
            "solution": self.solution,
            "version": self.version,
            "recipe": self.recipe.value,
            "numItems": self.num_items,
            "numUsers": self.num_users,
            "dimensions": self.dimensions,
            "createdAt": self.created_at,
            "files": {name: entry.to_json() for name, entry in sorted(self.files.items())},
        } | optional

    @classmethod
    def from_json(cls, raw: Any) -> Manifest:
        try:
            if raw["formatVersion"] != FORMAT_VERSION:
                raise ArtifactError(f"manifest format {raw['formatVersion']} is not {FORMAT_VERSION}")
            return cls(
                solution_version_arn=str(raw["solutionVersionArn"]),
                solution=str(raw["solution"]),
                version=str(raw["version"]),
                recipe=Recipe(raw["recipe"]),
                num_items=int(raw["numItems"]),
                num_users=int(raw["numUsers"]),
                dimensions=int(raw["dimensions"]),
                created_at=float(raw["createdAt"]),
                files={str(k): FileEntry.from_json(v) for k, v in raw["files"].items()},
                dataset_group_arn=str(raw["datasetGroupArn"]) if raw.get("datasetGroupArn") else None,
                fold_in=FoldIn.from_json(raw["foldIn"]) if raw.get("foldIn") else None,
                user_pages=UserPages.from_json(raw["userPages"]) if raw.get("userPages") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"manifest is malformed: {exc!r}") from None


def read_plan(manifest: Manifest) -> list[tuple[str, int | None]]:
    """What loading the version reads: ``(file, None)`` for a file read whole as bytes (the ids
    first: the load indexes them first), then ``(file, size)`` for each factor matrix received into
    its serving memory (the item matrix first: the largest). An item matrix in C order (published
    before Fortran order and the planes) is streamed instead, and not listed."""
    recipe, files = manifest.recipe, manifest.files
    skipped = {ArrayName.ITEM_FACTORS.value, ArrayName.USER_FACTORS.value}
    if not recipe.needs_user_factors:
        skipped.add(ArrayName.USER_LOG_NORMALISERS.value)
    first = [name.value for name in (ArrayName.ITEM_IDS, ArrayName.ITEM_IDS_INDEX, ArrayName.USER_IDS)]
    first.append(ArrayName.USER_IDS_INDEX.value)
    plan: list[tuple[str, int | None]] = [(name, None) for name in first if name in files]
    plan += [(name, None) for name in files if name not in skipped and name not in first]
    items, users = files.get(ArrayName.ITEM_FACTORS.value), files.get(ArrayName.USER_FACTORS.value)
    if recipe.needs_item_factors and items is not None and (items.fortran_order or items.layout is not None):
        plan.append((ArrayName.ITEM_FACTORS.value, items.size))
    if recipe.needs_user_factors and manifest.num_users > 0 and users is not None:
        plan.append((ArrayName.USER_FACTORS.value, users.size))
    return plan
