"""Errors that selma-bench reports to users as one clear message (no traceback)."""

from __future__ import annotations

from pathlib import Path


class SelmaError(Exception):
    """Base class: the CLI prints the message and exits with status 2."""


class DataInputError(SelmaError):
    """Bad content in an input file; the message names the file, the row and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}" if isinstance(row, int) else str(row))
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class DataNotFoundError(SelmaError):
    """A data file is neither on disk nor downloadable."""
