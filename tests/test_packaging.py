"""Packaging: every package selma imports is declared, and the lowest env tests the declared lower bounds."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NOT_INSTALLED_HERE = {"wandb": "wandb"}  # declared (tracking extra), not in the test environment


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> dict[str, str]:
    requirements = [
        *PYPROJECT["dependencies"],
        *(r for extra in PYPROJECT["optional-dependencies"].values() for r in extra),
    ]
    return {_name(r): r for r in requirements}


def _imported_modules() -> set[str]:
    modules = set()
    for path in (REPO / "selma").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"selma"}


def test_every_imported_package_is_declared() -> None:
    distributions = {**{k: v[0] for k, v in packages_distributions().items()}, **NOT_INSTALLED_HERE}
    imported = {module: _name(distributions.get(module, module)) for module in _imported_modules()}
    undeclared = {module: dist for module, dist in imported.items() if dist not in _declared()}
    assert not undeclared, f"imported but not in pyproject.toml: {undeclared}"
    assert {"torch", "diffusers", "pillow", "huggingface-hub", "tokenizers"} <= set(imported.values())
    assert (REPO / "selma" / "py.typed").is_file()


def test_the_lowest_env_pins_every_declared_lower_bound() -> None:
    pins = {}
    for line in (REPO / "constraints-lowest.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    tested = [
        *PYPROJECT["dependencies"],
        *(r for e in ("models", "llm", "test") for r in PYPROJECT["optional-dependencies"][e]),
    ]
    for requirement in tested:
        bound = re.search(r">=([\w.]+)", requirement)
        assert bound, f"{requirement}: no lower bound"
        name = _name(requirement)
        assert name in pins, f"constraints-lowest.txt does not pin {name}"
        pinned = tuple(int(p) for p in pins[name].split("."))
        declared = tuple(int(p) for p in bound.group(1).split("."))
        assert pinned[: len(declared)] == declared and not any(pinned[len(declared) :]), (
            f"{name}: pyproject says >={bound.group(1)}, constraints-lowest.txt tests {pins[name]}"
        )
    tox = (REPO / "tox.ini").read_text(encoding="utf-8")
    assert "[testenv:lowest]" in tox and "constraints-lowest.txt" in tox
