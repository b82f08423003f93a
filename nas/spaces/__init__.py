"""Registry of search spaces.

Example:
    >>> import nas
    >>> space = nas.spaces.get("nb201")
    >>> arch = space.decode("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    >>> space.encode(arch) == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    True
"""

from __future__ import annotations

from typing import Any

from nas.registry import Registry
from nas.spaces.base import SearchSpace

#: The search spaces: each entry is a :class:`SearchSpace` subclass (or a factory returning one).
REGISTRY: Registry[type[SearchSpace]] = Registry("search space")
register = REGISTRY.register
available = REGISTRY.available
_DEFAULTS: dict[str, SearchSpace] = {}


def create(name: str, **kwargs: Any) -> SearchSpace:
    """A new instance of the space ``name`` with constructor arguments ``kwargs``.

    Raises:
        ValueError: unknown space (listing the known ones), or an argument the space lacks.
    """
    cls = REGISTRY.get(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"search space {name!r} does not take {sorted(kwargs)}: {e}") from None


def get(name: str) -> SearchSpace:
    """The space ``name`` with its default arguments (one shared instance per name)."""
    if name not in _DEFAULTS:
        _DEFAULTS[name] = create(name)
    return _DEFAULTS[name]


from nas.spaces import (  # noqa: E402  (registers the built-in spaces)
    darts,  # noqa: F401
    mbv2,  # noqa: F401
    nb101,  # noqa: F401
    nb201,  # noqa: F401
)

__all__ = ["REGISTRY", "SearchSpace", "available", "create", "get", "register"]
