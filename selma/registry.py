"""A small named registry shared by suites, metrics, answerers, loaders, LLM backends and skills.

An entry is an object or a lazy ``"module:attr"`` reference, imported on first :meth:`Registry.get`
(as lm-evaluation-harness registers its tasks), so listing names never imports a heavy module.
Before its first lookup a registry loads the plugins (:mod:`selma.plugins`), so a plugin's entries
(the shapes world's suites, metric, answerer, prompt writer and skills) are there although nothing
in the harness or the recipe imports the plugin.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, cast

from selma.errors import SelmaError

T = TypeVar("T")


class _Lazy:
    """A ``"module:attr"`` entry, not imported yet."""

    def __init__(self, target: str) -> None:
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"a lazy entry is 'module:attr', got {target!r}")
        self.module, self.attr = module, attr

    def resolve(self) -> object:
        return getattr(importlib.import_module(self.module), self.attr)


class Registry(Generic[T]):
    """Maps names to objects; rejects duplicates and names the choices on a miss.

    Example::

        matchers: Registry[type[Matcher]] = Registry("matcher")

        @matchers.register("exact")
        class ExactMatcher: ...

        matchers.add_lazy("fuzzy", "my_package.matchers:FuzzyMatcher")
        matchers.get("exact")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T | _Lazy] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a second registration of a name is an error."""
        self._put(name, item)
        return item

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attr"`` under ``name``; the module is imported when ``name`` is first looked up."""
        self._put(name, _Lazy(target))

    def _put(self, name: str, item: T | _Lazy) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(item: T) -> T:
            return self.add(name, item)

        return decorator

    def get(self, name: str) -> T:
        """Return the item registered as ``name``, or raise a :class:`SelmaError` listing the choices."""
        _plugins()
        try:
            item = self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items)) or "none"
            raise SelmaError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None
        if isinstance(item, _Lazy):
            item = self._items[name] = cast(T, item.resolve())
        return item

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        _plugins()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        _plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _plugins() -> None:
    from selma.plugins import load_plugins

    load_plugins()
