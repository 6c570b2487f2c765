"""The S3 layout of models: one place that both the publisher and the loader read.

    solutions/<solution>/<version>/manifest.json   written last: a version without it does not exist
    solutions/<solution>/<version>/<array files>   listed with sha256, size, dtype and shape in the manifest
    campaigns/<campaign>.json                      a pointer to the solution version it serves

A solution version is immutable; switching a campaign rewrites only its pointer.
"""

from __future__ import annotations

import enum
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ArtifactError

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


def version_prefix(solution: str, version: str) -> str:
    return f"solutions/{solution}/{version}/"


def campaign_key(campaign: str) -> str:
    return f"campaigns/{campaign}.json"


def filter_key(name: str) -> str:
    return f"filters/{name}.json"


@dataclass(frozen=True, slots=True)
class FileEntry:
    sha256: str
    size: int
    #: numpy dtype string and shape for .npy files; None for id lists.
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    #: The .npy holds its array in Fortran (column) order: the item matrix is published that way,
    #: [d, items] in bytes, the layout it is served in. Versions published before are in C order.
    fortran_order: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sha256": self.sha256, "bytes": self.size}
        if self.dtype is not None:
            out["dtype"] = self.dtype
            out["shape"] = list(self.shape or ())
        if self.fortran_order:
            out["order"] = "F"
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FileEntry:
        shape = raw.get("shape")
        return cls(
            sha256=str(raw["sha256"]),
            size=int(raw["bytes"]),
            dtype=raw.get("dtype"),
            shape=tuple(int(n) for n in shape) if shape is not None else None,
            fortran_order=raw.get("order", "C") == "F",
        )


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_ids(ids: list[str]) -> bytes:
    return "\n".join(ids).encode("utf-8")


def decode_ids(data: bytes, expected: int) -> list[str]:
    ids = data.decode("utf-8").split("\n") if data else []
    if len(ids) != expected:
        raise ArtifactError(f"id list has {len(ids)} ids, the manifest says {expected}")
    return ids


def encode_npy(array: np.ndarray, fortran_order: bool = False) -> bytes:
    """The .npy file of ``array``, in C order, or in Fortran order (column after column)."""
    buffer = io.BytesIO()
    laid_out = np.asfortranarray(array) if fortran_order and array.ndim > 1 else np.ascontiguousarray(array)
    np.save(buffer, laid_out, allow_pickle=False)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]
    #: Where the array's bytes start (numpy pads headers so that this is a multiple of 64).
    offset: int
    fortran_order: bool

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def npy_header(prefix: bytes | memoryview) -> NpyHeader | None:
    """The header once ``prefix`` holds all of it; None before that.

    The one parser of .npy headers (whole files and streamed prefixes alike): versions 1 and 2,
    no Python objects.
    """
    if len(prefix) < 10:
        return None
    prefix = bytes(prefix[: 12 + (1 << 16)])  # a header is never longer (numpy's own limit)
    stream = io.BytesIO(prefix)
    try:
        major, _minor = np.lib.format.read_magic(stream)
        width = 2 if major == 1 else 4
        size = int.from_bytes(prefix[8 : 8 + width], "little")
        if len(prefix) < 8 + width + size:
            return None
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(stream)
    except ValueError as exc:
        raise ArtifactError(f"not a .npy file: {exc}") from None
    if dtype.hasobject:
        raise ArtifactError("arrays must hold no Python objects")
    return NpyHeader(tuple(shape), dtype, stream.tell(), bool(fortran_order))


def decode_npy(data: bytes, entry: FileEntry) -> np.ndarray:
    """A read-only array viewing ``data`` (no copy), checked against the manifest's dtype and shape."""
    header = npy_header(data)
    if header is None:
        raise ArtifactError("not a .npy file: the header is truncated")
    if entry.dtype is not None and (header.dtype.str != entry.dtype or header.shape != entry.shape):
        raise ArtifactError(
            f"array is {header.dtype.str}{list(header.shape)}, the manifest says {entry.dtype}{entry.shape}"
        )
    if len(data) - header.offset != header.data_bytes:
        raise ArtifactError("array data is truncated or has trailing bytes")
    flat = np.frombuffer(
        data, dtype=header.dtype, count=header.data_bytes // header.dtype.itemsize, offset=header.offset
    )
    if header.fortran_order:
        return flat.reshape(header.shape[::-1]).T
    return flat.reshape(header.shape)


@dataclass(frozen=True, slots=True)
class Manifest:
    solution_version_arn: str
    solution: str
    version: str
    recipe: Recipe
    num_items: int
    num_users: int
    dimensions: int
    created_at: float
    files: dict[str, FileEntry]

    def to_json(self) -> dict[str, Any]:
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
        }

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
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"manifest is malformed: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class CampaignPointer:
    campaign_arn: str
    name: str
    solution_version_arn: str
    solution: str
    version: str
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "campaignArn": self.campaign_arn,
            "name": self.name,
            "solutionVersionArn": self.solution_version_arn,
            "solution": self.solution,
            "version": self.version,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }

    @classmethod
    def from_json(cls, raw: Any) -> CampaignPointer:
        try:
            return cls(
                campaign_arn=str(raw["campaignArn"]),
                name=str(raw["name"]),
                solution_version_arn=str(raw["solutionVersionArn"]),
                solution=str(raw["solution"]),
                version=str(raw["version"]),
                created_at=float(raw["creationDateTime"]),
                updated_at=float(raw["lastUpdatedDateTime"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"campaign record is malformed: {exc!r}") from None
