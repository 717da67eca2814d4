"""Prompt files: JSON lines of ``{"id", "text"}`` (what ``datagen`` writes) or one prompt per line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selma.errors import DataInputError
from selma.io import read_jsonl, safe_id


@dataclass(frozen=True)
class PromptItem:
    """One prompt to render: a file-name-safe id and the text."""

    id: str
    text: str


def read_prompt_file(path: Path) -> list[PromptItem]:
    """Read and validate a prompt file; ids must be unique once made file-name safe."""
    if path.is_dir():
        raise DataInputError(
            "a folder, not a prompt file (a .jsonl of {id, text} rows, or a .txt with one prompt per line)", path=path
        )
    if not path.is_file():
        raise DataInputError("no such prompt file", path=path)
    items: list[PromptItem] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        raw_ids: dict[str, str] = {}  # file-name-safe id -> the id as written
        for n, row in enumerate(read_jsonl(path, allow_empty=False)):
            where = f"line {row['_line']}"
            text = row.get("text", row.get("prompt"))
            if not isinstance(text, str) or not text.strip():
                raise DataInputError("missing or empty prompt text", path=path, row=where, field="text")
            field = "id" if "id" in row else "prompt_id" if "prompt_id" in row else None  # suites export: prompt_id
            raw_id = str(row[field]) if field else str(n)
            item = PromptItem(safe_id(raw_id), text.strip())
            if item.id in raw_ids:
                first = raw_ids[item.id]
                same = "" if first == raw_id else f" ({raw_id!r} and {first!r} both make the file name {item.id!r})"
                raise DataInputError(f"duplicate prompt id {raw_id!r}{same}", path=path, row=where, field=field or "id")
            raw_ids[item.id] = raw_id
            items.append(item)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip():
                items.append(PromptItem(f"line{number:05d}", line.strip()))
        if not items:
            raise DataInputError("the file is empty", path=path)
    return items
