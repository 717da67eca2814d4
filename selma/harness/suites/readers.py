"""Validated readers for the tabular and JSON files that suites and answers come in.

Every error names the file, the line (or JSON path) and the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from selma.errors import DataInputError


def read_table(path: Path, required: Iterable[str], *, sep: str = ",") -> pd.DataFrame:
    """Read a CSV/TSV as strings (blank cells stay ``""``), checking it is non-empty and has ``required``.

    Rows keep their file line number in the ``_line`` column (header = line 1).
    """
    if not Path(path).is_file():
        raise DataInputError("no such file" if not Path(path).exists() else "not a file", path=path)
    try:
        frame = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL, encoding="utf-8"
        )
    except pd.errors.EmptyDataError:
        raise DataInputError("the file is empty", path=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataInputError(f"cannot be parsed as {'TSV' if sep == chr(9) else 'CSV'} ({exc})", path=path) from None
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataInputError(
            f"missing column(s) {', '.join(missing)}; found: {', '.join(map(str, frame.columns))}",
            path=path,
            row="line 1 (header)",
            field=missing[0],
        )
    if frame.empty:
        raise DataInputError("the file has a header but no rows", path=path)
    frame["_line"] = range(2, len(frame) + 2)
    return frame


def line_of(frame: pd.DataFrame, index: Any) -> str:
    """The ``line N`` label of a row read by :func:`read_table`."""
    return f"line {frame.at[index, '_line']}"


def check_unique(frame: pd.DataFrame, path: Path, keys: list[str]) -> None:
    """Fail on the first row whose ``keys`` repeat an earlier row."""
    duplicated = frame.duplicated(subset=keys, keep="first")
    if duplicated.any():
        index = duplicated.idxmax()
        first = frame[(frame[keys] == frame.loc[index, keys]).all(axis=1)].index[0]
        values = ", ".join(f"{k}={frame.at[index, k]!r}" for k in keys)
        raise DataInputError(
            f"duplicate id ({values}) already on {line_of(frame, first)}",
            path=path,
            row=line_of(frame, index),
            field=keys[-1],
        )


def check_non_empty(frame: pd.DataFrame, path: Path, columns: Iterable[str]) -> None:
    """Fail on the first blank cell in ``columns``."""
    for column in columns:
        blank = frame[column].str.strip() == ""
        if blank.any():
            raise DataInputError("is empty", path=path, row=line_of(frame, blank.idxmax()), field=column)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names its line and column."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataInputError("the file is empty", path=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataInputError(
            f"not valid JSON ({exc.msg}, column {exc.colno})", path=path, row=f"line {exc.lineno}"
        ) from None


def require_str(value: Any, path: Path, where: str, field: str) -> str:
    """``value`` as a non-empty string, else an error naming ``where`` and ``field``."""
    if not isinstance(value, str) or not value.strip():
        shown = "missing" if value is None else f"expected a non-empty string, got {value!r}"
        raise DataInputError(shown, path=path, row=where, field=field)
    return value
