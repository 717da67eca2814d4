"""A small named registry shared by suites, answer formats, matchers and loaders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from selma.errors import SelmaError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; rejects duplicates and names the choices on a miss.

    Example::

        matchers: Registry[type[Matcher]] = Registry("matcher")

        @matchers.register("exact")
        class ExactMatcher: ...

        matchers.get("exact")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a second registration of a name is an error."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(item: T) -> T:
            return self.add(name, item)

        return decorator

    def get(self, name: str) -> T:
        """Return the item registered as ``name``, or raise a :class:`SelmaError` listing the choices."""
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items)) or "none"
            raise SelmaError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
