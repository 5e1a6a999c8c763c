"""Errors of the backend page file, translated once at the public boundary."""

from __future__ import annotations

__all__ = ["BackendCorruptError", "BackendError"]


class BackendError(Exception):
    """A misuse of the backend or an I/O failure below it."""


class BackendCorruptError(BackendError):
    """The file is damaged: ``str()`` names the file, the page id and what is wrong."""

    def __init__(self, path: str, pgid: int | None, what: str) -> None:
        self.path = path
        self.pgid = pgid
        self.what = what
        where = f"page {pgid}" if pgid is not None else "file"
        super().__init__(f"{path}: {where}: {what}")
