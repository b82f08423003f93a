"""The interface every search space implements."""

from __future__ import annotations

import abc
import copy
from typing import Any, Generic, TypeVar

import numpy as np
from torch import nn

from nas.data import BenchmarkTable

A = TypeVar("A")


class SearchSpace(abc.ABC, Generic[A]):
    """A family of architectures: an immutable, hashable value type plus the operations on it.

    Architectures are plain frozen values (`encode`/`decode` round-trip); networks are built
    from them by :meth:`build`. Sampling and mutation take the caller's
    ``numpy.random.Generator`` and never touch global random state.
    """

    #: Registry name of the space, e.g. ``"nb201"``.
    name: str = ""
    #: The space's budget (see :meth:`with_budget`): multiply-accumulates and parameters, or None.
    max_flops: float | None = None
    max_params: float | None = None
    #: Draws :meth:`sample_within` and :meth:`mutate_within` try before they give up.
    max_tries: int = 10_000

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
    def cost(self, arch: A, num_classes: int | None = None) -> tuple[int, int]:
        """``(MACs, params)`` of :meth:`build`'s network, computed without building it:
        multiply-accumulates of one forward pass of one sample (conv and linear layers) and the
        number of parameters. ``num_classes`` None: the space's default."""

    def flops(self, arch: A, num_classes: int | None = None) -> int:
        """Multiply-accumulates of one forward pass of one sample (conv and linear layers)."""
        return self.cost(arch, num_classes)[0]

    def params(self, arch: A, num_classes: int | None = None) -> int:
        """Number of parameters of the built network."""
        return self.cost(arch, num_classes)[1]

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

    def benchmark(self) -> BenchmarkTable | None:
        """The space's ground-truth table (true accuracies of known architectures), if it has one."""
        return None

    def table_row(self, arch: A) -> int | None:
        """The row of :meth:`benchmark` holding ``arch`` (by :meth:`key`), or None."""
        table = self.benchmark()
        return None if table is None else table.index_of.get(self.key(arch))

    def input_resolution(self, arch: A) -> int | None:
        """The input side in pixels ``arch`` is built for, or None when it takes the batch as it is."""
        return None

    def config(self) -> dict[str, Any]:
        """The space's arguments and budget (public attributes), for a run's fingerprint."""
        return {k: v for k, v in sorted(vars(self).items()) if not k.startswith("_")}

    # ------------------------------------------------------------------ budget
    def smallest(self) -> A | None:
        """The architecture of least cost, for budget messages (None when the space has no such notion)."""
        return None

    def with_budget(self, max_flops: float | None = None, max_params: float | None = None) -> SearchSpace[A]:
        """The same space restricted to ``flops <= max_flops`` and ``params <= max_params``.

        The budget is the one mechanism every search uses: :meth:`sample_within`,
        :meth:`mutate_within` and :meth:`within_budget` only return architectures that fit it.

        Raises:
            ValueError: a limit that is not positive, or one below the cost of the space's
                smallest network (naming that network and its cost).
        """
        for label, limit in (("max_flops", max_flops), ("max_params", max_params)):
            if limit is not None and not (isinstance(limit, int | float) and limit > 0):
                raise ValueError(f"{label} must be a positive number or None, got {limit!r}")
        space = copy.copy(self)
        space.max_flops, space.max_params = max_flops, max_params
        space._check_reachable()
        return space

    def _check_reachable(self) -> None:
        small = self.smallest()
        if small is not None and not self.fits(small):
            raise ValueError(
                f"no architecture of space {self.name!r} fits max_flops={self.max_flops}, "
                f"max_params={self.max_params}: its smallest network ({self.encode(small)}) has "
                f"{self.flops(small):,} MACs and {self.params(small):,} params"
            )

    def fits(self, arch: A) -> bool:
        """Whether ``arch`` is within the space's budget."""
        if self.max_flops is not None and self.flops(arch) > self.max_flops:
            return False
        return self.max_params is None or self.params(arch) <= self.max_params

    def sample_within(self, rng: np.random.Generator) -> A:
        """One architecture within the budget (:meth:`sample` until one fits).

        Raises:
            ValueError: none of :attr:`max_tries` draws fits (the smallest network does: the
                budget admits only a sliver of the space).
        """
        for _ in range(self.max_tries):
            arch = self.sample(rng)
            if self.fits(arch):
                return arch
        raise ValueError(
            f"none of {self.max_tries:,} architectures drawn from space {self.name!r} fits "
            f"max_flops={self.max_flops}, max_params={self.max_params}; raise the budget"
        )

    def within_budget(self, arch: A, rng: np.random.Generator) -> A | None:
        """``arch`` brought within the budget: itself if it fits, else None (a space that can
        shrink an architecture to fit, as the MobileNet-like space does, overrides this)."""
        return arch if self.fits(arch) else None

    def mutate_within(self, arch: A, rng: np.random.Generator) -> A | None:
        """A neighbour of ``arch`` within the budget, or None when :attr:`max_tries` mutations miss it."""
        for _ in range(self.max_tries):
            child = self.mutate(arch, rng)
            if self.fits(child):
                return child
        return None
