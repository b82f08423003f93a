"""The one registry style of the package, as timm's ``register_model`` / ``list_models`` / ``create_model``.

Search spaces, proxies (single measures and aggregates alike) and search algorithms each have a
:class:`Registry`: ``register(name)`` as a decorator, ``available()`` for the sorted names,
``get(name)`` for the registered entry and ``create(name, **kwargs)`` to call it. Registering a
name twice raises; an unknown name raises ``ValueError`` listing the known ones.

Example:
    >>> reg = Registry("widget")
    >>> @reg.register("blue")
    ... def blue(size: int = 1) -> str:
    ...     return "blue" * size
    >>> reg.available(), reg.create("blue", size=2)
    (['blue'], 'blueblue')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what the entries are, for messages ("search space", "proxy", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its argument under ``name``; ``ValueError`` if the name is taken."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def deco(entry: T) -> T:
            self.add(name, entry)
            return entry

        return deco

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` under ``name`` (the non-decorator form)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; ``ValueError`` listing the known names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}") from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the entry registered as ``name`` (a class or factory) with the arguments."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self._entries)
