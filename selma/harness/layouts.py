"""The image-folder layouts ``score`` reads, and the prompt files ``suites export`` writes for other generators.

Read, in this order (the first that applies):

- ``metadata.jsonl`` (``generate``'s output, a datasets imagefolder): ``file_name`` and ``prompt_id`` or the
  prompt text (``text``, ``prompt`` or ``caption``);
- ``metadata.csv`` (a datasets imagefolder): the same columns;
- GenEval's ``<index:05d>/metadata.jsonl`` + ``<index:05d>/samples/<k:04d>.png`` (``generation/diffusers_generate.py``);
- file names: ``<prompt id>.<ext>``, ``<prompt id>_<k>.<ext>``, the prompt text itself with an optional
  ``_<k>`` (T2I-CompBench's ``samples/<prompt>_<k:06d>.png``; a ``samples/`` subfolder is looked into).

Prompt texts match exactly or, failing that, after lower-casing and collapsing everything but letters and
digits to single spaces (file names cannot hold every character of a prompt).
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from selma.errors import DataInputError, SelmaError
from selma.harness.suites import Suite
from selma.io import atomic_write_text, inside, read_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TEXT_FIELDS = ("text", "prompt", "caption")
EXPORT_FORMATS = ("jsonl", "txt", "geneval")
_NUMBERED = re.compile(r"^(?P<stem>.+?)_(?P<k>\d+)$")


@dataclass(frozen=True)
class ImageSet:
    """Image files per suite prompt id, the ones that matched no prompt, and the layout they were read as."""

    by_prompt: dict[str, list[Path]]
    unmatched: list[str]
    layout: str


def loose(text: str) -> str:
    """A prompt text compared loosely: lower case, every run of non-alphanumerics one space."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


class PromptMatcher:
    """Finds the suite prompt ids an image belongs to, from an id or a prompt text (a text that several
    prompts share belongs to all of them).
    """

    def __init__(self, suite: Suite) -> None:
        self.ids = {p.id for p in suite.prompts}
        self.by_text: dict[str, list[str]] = defaultdict(list)
        self.by_loose: dict[str, list[str]] = defaultdict(list)
        for p in suite.prompts:
            self.by_text[p.text].append(p.id)
            self.by_loose[loose(p.text)].append(p.id)

    def text(self, text: str | None) -> list[str]:
        """The ids of the prompts with this text."""
        if not text:
            return []
        return self.by_text.get(text) or self.by_loose.get(loose(text)) or []

    def row(self, row: dict[str, object]) -> list[str]:
        """The ids a metadata row names by ``prompt_id`` or by its prompt text."""
        if row.get("prompt_id") in self.ids:
            return [str(row["prompt_id"])]
        return next((ids for f in TEXT_FIELDS if (ids := self.text(_str(row.get(f))))), [])

    def file_stem(self, stem: str) -> list[str]:
        """The ids a file name gives: an id or a prompt text, each with an optional ``_<k>`` suffix."""
        candidates = [stem]
        match = _NUMBERED.match(stem)
        if match:
            candidates.append(match.group("stem"))
        for candidate in candidates:
            if candidate in self.ids:
                return [candidate]
            found = self.text(candidate)
            if found:
                return found
        return []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _metadata_rows(folder: Path) -> Iterator[tuple[dict[str, object], Path, str]]:
    """Rows of ``metadata.jsonl`` or ``metadata.csv``: (row, metadata file, row label)."""
    jsonl, table = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file():
        for row in read_jsonl(jsonl, {"file_name": str}):
            yield row, jsonl, f"line {row['_line']}"
        return
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(handle)
            if "file_name" not in (reader.fieldnames or []):
                raise DataInputError("no file_name column", path=table, row="header", field="file_name")
            rows = [(dict(row), number) for number, row in enumerate(reader, start=2)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataInputError(f"not a UTF-8 CSV file ({exc})", path=table) from None
    for row, number in rows:
        if not row.get("file_name"):
            raise DataInputError("empty file_name", path=table, row=f"row {number}", field="file_name")
        yield row, table, f"row {number}"


def _from_metadata(folder: Path, matcher: PromptMatcher) -> Iterable[tuple[Path, list[str], str]]:
    for row, source, where in _metadata_rows(folder):
        name = str(row["file_name"])
        path = inside(folder, name, path=source, row=where, field="file_name")
        if not path.is_file():
            raise DataInputError(f"no image {name!r} in {folder}", path=source, row=where, field="file_name")
        yield path, matcher.row(row), name


def _from_geneval(folder: Path, matcher: PromptMatcher) -> Iterable[tuple[Path, list[str], str]]:
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "metadata.jsonl").is_file()):
        rows = read_jsonl(sub / "metadata.jsonl", {})
        prompt_ids = matcher.row(rows[0]) if rows else []
        for path in _images(sub / "samples") if (sub / "samples").is_dir() else []:
            yield path, prompt_ids, f"{sub.name}/samples/{path.name}"


def _from_names(folder: Path, matcher: PromptMatcher) -> Iterable[tuple[Path, list[str], str]]:
    for path in _images(folder):
        yield path, matcher.file_stem(path.stem), path.name


def _layout(folder: Path) -> tuple[str, Path]:
    if (folder / "metadata.jsonl").is_file():
        return "metadata.jsonl", folder
    if (folder / "metadata.csv").is_file():
        return "metadata.csv", folder
    if any(p.is_dir() and (p / "metadata.jsonl").is_file() for p in folder.iterdir()):
        return "geneval", folder
    if not _images(folder) and (folder / "samples").is_dir():
        return "file names", folder / "samples"  # T2I-CompBench's output folder
    return "file names", folder


def find_images(folder: Path, suite: Suite) -> ImageSet:
    """Match the images in ``folder`` to the prompts of ``suite``, whatever the layout (see the module)."""
    if not folder.is_dir():
        raise SelmaError(f"{folder}: no such image folder")
    layout, root = _layout(folder)
    read = {"metadata.jsonl": _from_metadata, "metadata.csv": _from_metadata, "geneval": _from_geneval}
    matcher = PromptMatcher(suite)
    found: dict[str, list[Path]] = defaultdict(list)
    unmatched: list[str] = []
    for path, prompt_ids, name in read.get(layout, _from_names)(root, matcher):
        if not prompt_ids:
            unmatched.append(name)
        for prompt_id in prompt_ids:
            found[prompt_id].append(path)
    if not found:
        raise SelmaError(
            f"{folder}: no image matches a prompt of suite '{suite.name}' (read as {layout}; see `selma-bench "
            "score -h` for the layouts read)"
        )
    return ImageSet({pid: sorted(paths) for pid, paths in found.items()}, unmatched, layout)


def export_prompts(suite: Suite, out: Path, fmt: str) -> Path:
    """Write ``suite``'s prompts for another generator: ``jsonl`` (``prompt_id``, ``text``, ``category``),
    ``txt`` (one prompt per line) or ``geneval`` (GenEval's metadata lines: the source's fields and ``prompt``).
    """
    if fmt not in EXPORT_FORMATS:
        raise SelmaError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    if fmt == "txt":
        bad = [p.id for p in suite.prompts if "\n" in p.text]
        if bad:
            raise SelmaError(f"prompt {bad[0]!r} of suite '{suite.name}' spans lines; export it as jsonl")
        text = "".join(f"{p.text}\n" for p in suite.prompts)
    elif fmt == "jsonl":
        text = "".join(
            json.dumps({"prompt_id": p.id, "text": p.text, "category": p.category}, ensure_ascii=False) + "\n"
            for p in suite.prompts
        )
    else:
        text = "".join(
            json.dumps({**dict(p.meta), "prompt": p.text, "prompt_id": p.id}, ensure_ascii=False, default=str) + "\n"
            for p in suite.prompts
        )
    atomic_write_text(out, text)
    return out
