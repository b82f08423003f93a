"""Registry of search spaces.

Example:
    >>> import nas
    >>> space = nas.spaces.get("nb201")
    >>> arch = space.decode("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    >>> space.encode(arch) == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    True
"""

from __future__ import annotations

from collections.abc import Callable

from nas.spaces.base import SearchSpace

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}
_INSTANCES: dict[str, SearchSpace] = {}


def register(name: str) -> Callable[[Callable[[], SearchSpace]], Callable[[], SearchSpace]]:
    """Register a space factory under ``name`` (a class or a zero-argument callable)."""

    def deco(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
        if name in _FACTORIES:
            raise ValueError(f"search space {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return deco


def available() -> list[str]:
    """Names of the registered search spaces."""
    return sorted(_FACTORIES)


def get(name: str) -> SearchSpace:
    """The search space registered as ``name`` (one shared instance per name)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown search space {name!r}; available: {', '.join(available())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


from nas.spaces import (  # noqa: E402  (registers the built-in spaces)
    mbv2,  # noqa: F401
    nb101,  # noqa: F401
    nb201,  # noqa: F401
)

__all__ = ["SearchSpace", "available", "get", "register"]
