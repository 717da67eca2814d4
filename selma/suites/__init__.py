"""Suites: declared in ``suites.yaml`` (or a user YAML of the same shape), loaded by format."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

from selma.errors import SelmaError
from selma.registry import Registry
from selma.suites.data import DataLocator, sha256_file
from selma.suites.loaders import loaders
from selma.suites.spec import DataFile, Prompt, Question, Suite, SuiteSpec, parse_suite_specs

BUILTIN_SUITES = Path(__file__).with_name("suites.yaml")

__all__ = [
    "DataFile",
    "DataLocator",
    "Prompt",
    "Question",
    "Suite",
    "SuiteSpec",
    "add_suites_file",
    "load_suite",
    "suite_registry",
]


@cache
def suite_registry() -> Registry[SuiteSpec]:
    """The registry of suite specs, filled from the built-in ``suites.yaml`` on first use."""
    registry: Registry[SuiteSpec] = Registry("suite")
    for name, spec in parse_suite_specs(BUILTIN_SUITES).items():
        registry.add(name, spec)
    return registry


def add_suites_file(path: str | Path) -> list[str]:
    """Register the suites of a user YAML file; returns their names."""
    specs = parse_suite_specs(Path(path))
    for name, spec in specs.items():
        suite_registry().add(name, spec)
    return list(specs)


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
