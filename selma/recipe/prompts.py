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
    if not path.is_file():
        raise DataInputError("no such prompt file", path=path)
    items: list[PromptItem] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, row in enumerate(read_jsonl(path, allow_empty=False)):
            where = f"line {row['_line']}"
            text = row.get("text", row.get("prompt"))
            if not isinstance(text, str) or not text.strip():
                raise DataInputError("missing or empty prompt text", path=path, row=where, field="text")
            raw_id = row.get("id", n)
            items.append(PromptItem(safe_id(str(raw_id)), text.strip()))
            _check_duplicate(items, path, where)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip():
                items.append(PromptItem(f"line{number:05d}", line.strip()))
        if not items:
            raise DataInputError("the file is empty", path=path)
    return items


def _check_duplicate(items: list[PromptItem], path: Path, where: str) -> None:
    last = items[-1].id
    if any(item.id == last for item in items[:-1]):
        raise DataInputError(f"duplicate prompt id {last!r}", path=path, row=where, field="id")
