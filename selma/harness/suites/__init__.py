"""Suites: declared in ``suites.yaml`` (or a user YAML of the same shape), loaded by format."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.harness.suites.data import DataLocator, sha256_file
from selma.harness.suites.loaders import loaders
from selma.harness.suites.spec import DataFile, Prompt, Question, Suite, SuiteSpec, parse_suite_specs
from selma.registry import Registry

BUILTIN_SUITES = Path(__file__).with_name("suites.yaml")
suite_files: Registry[Path] = Registry("suites file")
"""Further suites files, each registered by a plugin (the shapes world's ``selma/world/suites.yaml``)."""

__all__ = [
    "DataFile",
    "DataLocator",
    "Prompt",
    "Question",
    "Suite",
    "SuiteSpec",
    "add_suites_file",
    "load_suite",
    "suite_files",
    "suite_registry",
]


@cache
def suite_registry() -> Registry[SuiteSpec]:
    """The registry of suite specs, filled on first use from the built-in ``suites.yaml`` and the plugins'
    :data:`suite_files`.
    """
    registry: Registry[SuiteSpec] = Registry("suite")
    for path in [BUILTIN_SUITES, *(suite_files.get(name) for name in suite_files.names())]:
        for name, spec in parse_suite_specs(path).items():
            registry.add(name, spec)
    return registry


def add_suites_file(path: str | Path) -> list[str]:
    """Register the suites of a user YAML file; returns their names."""
    specs = parse_suite_specs(Path(path))
    for name, spec in specs.items():
        suite_registry().add(name, spec)
    return list(specs)


def suite_overview(locator: DataLocator) -> list[dict[str, object]]:
    """One row per registered suite: name, title, declared prompts, scoring, and whether its data is here."""
    registry = suite_registry()
    rows: list[dict[str, object]] = []
    for name in registry:
        spec = registry.get(name)
        data = _data_state(spec, file_status(spec, locator), locator)
        rows.append(
            {"name": name, "title": spec.title, "prompts": spec.n_prompts, "scoring": spec.scoring, "data": data}
        )
    return rows


def _data_state(spec: SuiteSpec, status: list[dict[str, Any]], locator: DataLocator) -> str:
    """``found``, ``found (no <role>)`` when an optional file is absent, ``download on first use`` when every
    absent required file has a public location and downloads are allowed, else ``missing``.
    """
    absent = [row for row in status if row["found_at"] is None]
    required = [row for row in absent if row["required"]]
    if not absent:
        return "found"
    if not required:
        return f"found (no {', '.join(str(row['role']) for row in absent)})"
    downloadable = not locator.offline and all(locator.url_for(spec.files[str(row["role"])]) for row in required)
    return "download on first use" if downloadable else "missing" + (" (offline)" if locator.offline else "")


def describe_suite(name: str, locator: DataLocator) -> dict[str, Any]:
    """What ``suites show`` prints: the suite's card, its files and where they were found, and (when its
    required files are here) its measured size, categories and notes.
    """
    from collections import Counter

    spec = suite_registry().get(name)
    status = file_status(spec, locator)
    info: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "source": spec.source,
        "license": spec.license,
        "citation": spec.citation,
        "scoring": spec.scoring,
        "declared": {"prompts": spec.n_prompts, "questions": spec.n_questions},
        "files": status,
    }
    if all(s["found_at"] for s in status if s["required"]):
        suite = load_suite(spec.name, locator)
        info["size"] = {"prompts": len(suite.prompts), "questions": len(suite.questions)}
        info["categories"] = dict(Counter(p.category for p in suite.prompts if p.category is not None))
        info["notes"] = list(suite.notes)
    return info


def load_suite(name: str, locator: DataLocator, need: Iterable[str] = ()) -> Suite:
    """Load suite ``name``: required files and those in ``need`` are resolved (downloaded if
    allowed); optional files are read when they are already on disk.
    """
    spec = suite_registry().get(name)
    unknown = sorted(set(locator.overrides) - set(spec.files))
    if unknown:
        roles = ", ".join(spec.files) or "none: its prompts are generated"
        raise SelmaError(
            f"--file {unknown[0]}=...: suite '{name}' has no file role {unknown[0]!r} (its roles: {roles})"
        )
    need = set(need)
    files: dict[str, Path] = {}
    for role, file in spec.files.items():
        if file.required or role in need:
            files[role] = locator.resolve(file, spec.name)
        else:
            found = locator.find(file)
            if found is not None:
                files[role] = locator.resolve(file, spec.name)
    loaded = loaders.get(spec.format)(spec, files)
    return Suite(spec, loaded.prompts, loaded.questions, loaded.notes, files)


def file_status(spec: SuiteSpec, locator: DataLocator) -> list[dict[str, str | int | None]]:
    """For each file of ``spec``: where it is found (or not) and whether its checksum matches."""
    rows = []
    for role, file in spec.files.items():
        found = locator.find(file)
        actual = sha256_file(found) if found else None
        if found is None:
            status = "not on disk" + (f"; downloaded on first use from {locator.url_for(file)}" if file.url else "")
        elif file.sha256 is None:
            status = "found (no pinned checksum)"
        else:
            status = "verified" if actual == file.sha256 else "CHECKSUM MISMATCH"
        rows.append(
            {
                "role": role,
                "path": file.path,
                "required": file.required,
                "size": file.size,
                "sha256": file.sha256,
                "found_at": str(found) if found else None,
                "status": status,
            }
        )
    return rows
