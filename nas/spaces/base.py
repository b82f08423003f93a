"""The interface every search space implements."""

from __future__ import annotations

import abc
from typing import Any, Generic, TypeVar

import numpy as np
from torch import nn

A = TypeVar("A")


class SearchSpace(abc.ABC, Generic[A]):
    """A family of architectures: an immutable, hashable value type plus the operations on it.

    Architectures are plain frozen values (`encode`/`decode` round-trip); networks are built
    from them by :meth:`build`. Sampling and mutation take the caller's
    ``numpy.random.Generator`` and never touch global random state.
    """

    #: Registry name of the space, e.g. ``"nb201"``.
    name: str = ""

    @abc.abstractmethod
    def decode(self, text: str) -> A:
        """Parse the canonical string form; raises ``ValueError`` naming the bad token."""

    @abc.abstractmethod
    def encode(self, arch: A) -> str:
        """The canonical string form of ``arch``; ``decode(encode(a)) == a``."""

    def key(self, arch: A) -> str:
        """Identity of the network ``arch`` builds: archs with equal keys build the same network
        (a search need score only one of them). Default: :meth:`encode`."""
        return self.encode(arch)

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> A:
        """One architecture drawn with ``rng``."""

    @abc.abstractmethod
    def mutate(self, arch: A, rng: np.random.Generator) -> A:
        """A neighbour of ``arch`` differing in one decision (never ``arch`` itself)."""

    @abc.abstractmethod
    def build(self, arch: A, num_classes: int = 10, **kwargs: Any) -> nn.Module:
        """The untrained network of ``arch``."""

    @abc.abstractmethod
    def flops(self, arch: A) -> int:
        """Multiply-accumulates of one forward pass of one sample (conv and linear layers)."""

    @abc.abstractmethod
    def params(self, arch: A) -> int:
        """Number of parameters of the built network."""

    @abc.abstractmethod
    def timm_spec(self, arch: A) -> tuple[str, dict[str, Any]]:
        """``(model_name, kwargs)`` such that ``timm.create_model(name, **kwargs)`` builds ``arch``."""

    def decisions(self, arch: A) -> list[int]:
        """The architecture as a list of categorical decisions (for policy-based search)."""
        raise NotImplementedError(f"space {self.name!r} does not expose categorical decisions")

    def from_decisions(self, choices: list[int]) -> A:
        """Inverse of :meth:`decisions`."""
        raise NotImplementedError(f"space {self.name!r} does not expose categorical decisions")

    def decision_sizes(self) -> list[int]:
        """Number of options of each categorical decision."""
        raise NotImplementedError(f"space {self.name!r} does not expose categorical decisions")
