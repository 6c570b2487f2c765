"""Where a version's user pages are, and the manifest's sum of them (``userPages``).

Numpy-free, as layout.py is (the head start reads manifests before numpy is imported); the pages'
format is user_pages.py's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

#: The folder of a version's user pages (files ``user_page_file(n)``), never read whole.
USER_PAGES_FOLDER = "user_pages/"


def user_page_file(number: int) -> str:
    """The name (under the version's prefix) of the ``number``-th file of user pages."""
    return f"{USER_PAGES_FOLDER}{number:06d}.bin"


class UserPages(NamedTuple):
    """The user vectors of a version, as pages of the ``user_pages/`` files (user_pages.py)."""

    files: int
    pages: int
    #: Pages per file (the last file may have fewer): page p is in file p // pages_per_file.
    pages_per_file: int
    #: The files' bytes in all, and the SHA-256 of their bytes one file after the other (part of
    #: the version's fingerprint; a page is checked against its CRC-32 in the page index).
    size: int
    sha256: str
    #: The pages carry each user's log-normaliser (else serving computes it on first use).
    normalisers: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "pages": self.pages,
            "pagesPerFile": self.pages_per_file,
            "bytes": self.size,
            "sha256": self.sha256,
            "normalisers": self.normalisers,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> UserPages:
        return cls(
            files=int(raw["files"]),
            pages=int(raw["pages"]),
            pages_per_file=int(raw["pagesPerFile"]),
            size=int(raw["bytes"]),
            sha256=str(raw["sha256"]),
            normalisers=bool(raw.get("normalisers", False)),
        )
