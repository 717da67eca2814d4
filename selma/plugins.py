"""Plugins: packages that add entries to selma-bench's registries (suites, suite formats, metrics, VQA
answerers, LLM backends, skill files) without the harness or the recipe importing them.

A plugin is a module whose import registers its entries. The built-in one is the shapes world
(:mod:`selma.world.plugin`); another package declares its own under the ``selma_bench.plugins`` entry-point
group (``[project.entry-points."selma_bench.plugins"] mine = "my_package.selma_plugin"``). Every
registry loads them, once, before its first lookup.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

BUILTIN_PLUGINS = ("selma.world.plugin",)
ENTRY_POINT_GROUP = "selma_bench.plugins"

_loaded: list[str] = []
_started = False


def load_plugins() -> list[str]:
    """Import every plugin once (built-in first, then the entry points, by name); their module names."""
    global _started
    if _started:
        return list(_loaded)
    _started = True  # a plugin's own registrations look registries up while it is imported
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    targets = [*BUILTIN_PLUGINS, *(ep.value for ep in found)]
    for target in targets:
        importlib.import_module(target.partition(":")[0])
        _loaded.append(target)
    return list(_loaded)
