"""The package's shape: small modules, no import cycle, the shapes world a plugin that nothing below it imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "selma"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """Every selma module ``path`` imports, at module level or inside a function, and every ``"selma.x:attr"``
    lazy reference it holds.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("selma."):
            found.add(node.value.partition(":")[0])
    return {m for m in found if m == "selma" or m.startswith("selma.")}


MODULES = _modules()
GRAPH = {name: {m for m in _imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_500_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines; split it along its jobs"


def test_nothing_in_the_harness_or_recipe_imports_the_world() -> None:
    below = [n for n in MODULES if n.startswith(("selma.harness", "selma.recipe"))]
    offenders = {n: sorted(m for m in GRAPH[n] if m.startswith("selma.world")) for n in below}
    assert not {n: m for n, m in offenders.items() if m}
    from selma.plugins import BUILTIN_PLUGINS

    assert "selma.world.plugin" in BUILTIN_PLUGINS


def test_no_import_cycle() -> None:
    """Every import between selma's modules, lazy ones included, points one way. A submodule importing its own
    package's ``__init__`` is not a cycle; nor is the plugin loader finding plugins by name (its job).
    """
    scope = set(MODULES)
    edges = {n: {m for m in GRAPH[n] if not n.startswith(m + ".")} for n in scope}
    edges["selma.plugins"] = set()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(scope):
        if node not in state:
            visit(node, [node])


def test_the_world_registers_through_its_plugin_alone() -> None:
    """The world's suites, metric, answerer, prompt writer and skills are found through the registries."""
    from selma.harness.metrics import all_metrics
    from selma.harness.metrics.vqa import vqa_models
    from selma.harness.suites import suite_registry
    from selma.harness.suites.loaders import loaders
    from selma.recipe.datagen.backends import backends
    from selma.recipe.datagen.skills import skill_names

    assert {"shapes", "shapes-mini", "shapes-val", "shapes-large"} <= set(suite_registry().names())
    assert "shapes-dsg" in all_metrics()
    assert "shapes-exact" in vqa_models
    assert loaders.get("shapes_world").__module__ == "selma.world.suite"
    assert backends.get("world").__module__ == "selma.world.prompt_writer"
    assert "world_spatial" in skill_names()


def test_lazy_registry_entries_import_on_first_lookup() -> None:
    import sys

    from selma.errors import SelmaError
    from selma.registry import Registry

    registry: Registry[object] = Registry("thing")
    registry.add_lazy("dumps", "json:dumps")
    registry.add_lazy("hsv", "colorsys:rgb_to_hsv")
    sys.modules.pop("colorsys", None)
    assert registry.names() == ["dumps", "hsv"]
    assert "colorsys" not in sys.modules  # listing imports nothing
    assert registry.get("dumps") is __import__("json").dumps
    assert registry.get("hsv")(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    with pytest.raises(SelmaError, match="unknown thing 'x'; choose one of: dumps, hsv"):
        registry.get("x")
    with pytest.raises(ValueError, match="already registered"):
        registry.add_lazy("dumps", "json:loads")
    with pytest.raises(ValueError, match="'module:attr'"):
        registry.add_lazy("bad", "json.dumps")


def test_every_registry_is_reached_one_way() -> None:
    from selma.registries import REGISTRIES, registry
    from selma.registry import Registry

    for kind in REGISTRIES:
        found = registry(kind)
        assert isinstance(found, Registry) and found.kind == kind and found.names(), kind
    assert {"shapes-base", "shapes-weak"} <= set(registry("model").names())  # the world plugin's models
    declared = {m.group(1) for m in __import__("re").finditer(r'Registry\("([^"]+)"\)', _all_source())}
    assert declared == set(REGISTRIES)


def _all_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in MODULES.values() if p.name != "registry.py")
