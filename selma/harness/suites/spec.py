"""Frozen descriptions of suites (what to load and from where) and of loaded suite content."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from selma.errors import DataInputError


@dataclass(frozen=True)
class DataFile:
    """One file a suite reads: where it lives under a data directory and where it comes from."""

    role: str
    path: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    required: bool = True


@dataclass(frozen=True)
class SuiteSpec:
    """A suite as declared in ``suites.yaml``: metadata, files, loader and loader options."""

    name: str
    title: str
    description: str
    source: str
    license: str
    citation: str
    format: str
    files: Mapping[str, DataFile]
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    scoring: str | None = None
    n_prompts: int | None = None
    n_questions: int | None = None


@dataclass(frozen=True)
class Prompt:
    """A suite prompt: a stable id, the text, its category and any extra fields of the source."""

    id: str
    text: str
    category: str | None = None
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Question:
    """A question about one prompt's image.

    ``parents`` are ids of questions of the same prompt that must score 1 for this one to count
    (DSG dependencies, parsed by the official DSG loader's rule); ``dependency`` is the raw
    dependency cell as the data file has it (SELMA's scorer parses it its own way);
    ``answer`` is the expected choice; ``element_type`` is the question's category (TIFA element
    type, DSG broad category) and ``detailed_type`` a finer one (DSG's ``category_detailed``).
    """

    prompt_id: str
    id: str
    text: str
    answer: str = "yes"
    choices: tuple[str, ...] = ("yes", "no")
    parents: tuple[str, ...] = ()
    element_type: str | None = None
    dependency: str | None = None
    detailed_type: str | None = None


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its spec, prompts in order, questions (for QA suites) and data notes."""

    spec: SuiteSpec
    prompts: tuple[Prompt, ...]
    questions: tuple[Question, ...] = ()
    notes: tuple[str, ...] = ()
    files: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def name(self) -> str:
        """The suite's registry name."""
        return self.spec.name

    def categories(self) -> list[str]:
        """Prompt categories in first-seen order."""
        return list(dict.fromkeys(p.category for p in self.prompts if p.category is not None))


GENERATED_FORMATS: set[str] = set()  # formats whose prompts are generated, not read from files (plugins add theirs)
_REQUIRED = ("title", "description", "source", "license", "format", "files")
_OPTIONAL = {"citation", "options", "scoring", "n_prompts", "n_questions"}
_FILE_KEYS = {"path", "url", "sha256", "size", "required"}


def parse_suite_specs(path: Path) -> dict[str, SuiteSpec]:
    """Read a suites YAML file into specs; a bad entry raises an error naming the file and key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataInputError(f"not valid YAML ({exc})", path=path) from None
    if not isinstance(raw, dict) or not raw:
        raise DataInputError("expected a mapping of suite names to suite entries", path=path)
    specs = {}
    for name, entry in raw.items():
        specs[str(name)] = _parse_entry(path, str(name), entry)
    return specs


def _parse_entry(path: Path, name: str, entry: object) -> SuiteSpec:
    def fail(key: str, message: str) -> DataInputError:
        return DataInputError(message, path=path, row=f"suite '{name}'", field=key)

    if not isinstance(entry, dict):
        raise fail(name, "expected a mapping")
    for key in _REQUIRED:
        if key not in entry:
            raise fail(key, "missing")
    unknown = set(entry) - set(_REQUIRED) - _OPTIONAL
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key")
    files = entry["files"]
    if not files:
        from selma.plugins import load_plugins

        load_plugins()  # a plugin's generated formats (the world's) are known before a user file is read
    if not isinstance(files, dict) or (not files and entry["format"] not in GENERATED_FORMATS):
        raise fail("files", "expected a mapping of file roles to {path, url, sha256, size} ({} for generated suites)")
    parsed_files = {}
    for role, spec in files.items():
        if not isinstance(spec, dict) or "path" not in spec:
            raise fail(f"files.{role}", "expected a mapping with at least 'path'")
        bad = set(spec) - _FILE_KEYS
        if bad:
            raise fail(f"files.{role}.{sorted(bad)[0]}", "unknown key")
        parsed_files[str(role)] = DataFile(role=str(role), **spec)
    for key in ("n_prompts", "n_questions"):
        if entry.get(key) is not None and not isinstance(entry[key], int):
            raise fail(key, f"expected an integer, got {entry[key]!r}")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise fail("options", "expected a mapping")
    return SuiteSpec(
        name=name,
        title=str(entry["title"]),
        description=" ".join(str(entry["description"]).split()),
        source=str(entry["source"]),
        license=str(entry["license"]),
        citation=str(entry.get("citation", "")),
        format=str(entry["format"]),
        files=MappingProxyType(parsed_files),
        options=MappingProxyType(dict(options)),
        scoring=entry.get("scoring"),
        n_prompts=entry.get("n_prompts"),
        n_questions=entry.get("n_questions"),
    )
