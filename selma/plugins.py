"""Plugins: packages that add entries to selma-bench's registries (suites, suite formats, metrics, VQA
answerers, LLM backends, skill files) without the harness or the recipe importing them.

A plugin is a module whose import registers its entries. The built-in one is the shapes world
(:mod:`selma.world.plugin`); another package declares its own under the ``selma_bench.plugins`` entry-point
group (``[project.entry-points."selma_bench.plugins"] mine = "my_package.selma_plugin"``). Every
registry loads them, once, before its first lookup.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

log = logging.getLogger(__name__)

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
    for target in BUILTIN_PLUGINS:
        importlib.import_module(target)
        _loaded.append(target)
    for entry in found:  # another package's plugin that fails to import is named, and the rest still work
        try:
            importlib.import_module(entry.value.partition(":")[0])
        except Exception as exc:  # any failure of a third-party import
            log.warning("plugin %r (%s) failed to load and is skipped: %s", entry.name, entry.value, exc)
            continue
        _loaded.append(entry.value)
    return list(_loaded)
