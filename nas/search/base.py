"""What every search algorithm shares: the objective, budgets and the ask/tell protocol."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas import proxies
from nas.spaces.base import SearchSpace


def _votes() -> Any:
    from nas.proxies import vote

    return vote


class Objective:
    """What a search maximizes: one registered proxy, or a vote over several.

    A candidate's scores are a vector in :attr:`members` order. For a single proxy its fitness
    is that score; for a vote it is relative to a set: the number of others in the set it
    beats by pairwise majority (ties broken by rank average).

    Args:
        proxy: a registered proxy name (``nas.proxies.available()``) or vote name (e.g. ``"sjw"``).
    """

    def __init__(self, proxy: str) -> None:
        self.name = proxy
        self.vote = None
        votes = _votes_available()
        if proxy in votes:
            self.vote = _votes().get_vote(proxy)
            self.members: tuple[str, ...] = tuple(self.vote.members)
        elif proxy in proxies.available():
            self.members = (proxy,)
        else:
            raise ValueError(
                f"unknown proxy or vote {proxy!r}; proxies: {', '.join(proxies.available())}; "
                f"votes: {', '.join(votes) or 'none'}"
            )

    def fitness(self, matrix: np.ndarray) -> np.ndarray:
        """Fitness of each row of ``matrix`` (n x members) within that set; larger is better."""
        matrix = np.asarray(matrix, dtype=np.float64).reshape(-1, len(self.members))
        if self.vote is None:
            return matrix[:, 0].copy()
        order = self.vote.order(matrix)
        fit = np.empty(len(matrix))
        fit[order] = np.arange(len(matrix), 0, -1, dtype=np.float64)
        return fit

    def order(self, matrix: np.ndarray) -> np.ndarray:
        """Row indices best-first (stable: earlier rows win ties)."""
        return np.argsort(-self.fitness(matrix), kind="stable")

    def best(self, matrix: np.ndarray) -> int:
        return int(self.order(matrix)[0])


def _votes_available() -> list[str]:
    try:
        return list(_votes().available_votes())
    except ImportError:
        return []


@dataclass(frozen=True)
class Budget:
    """Upper limits on multiply-accumulates and parameters (``None``: unlimited)."""

    max_flops: float | None = None
    max_params: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_flops", "max_params"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")

    def admits(self, space: SearchSpace, arch: Any) -> bool:
        if self.max_flops is not None and space.flops(arch) > self.max_flops:
            return False
        return not (self.max_params is not None and space.params(arch) > self.max_params)


class SearchAlgorithm(abc.ABC):
    """A search with its own seeded generator and an ask/tell loop.

    ``ask()`` returns architectures to score, never one already scored, all within the
    budget; ``tell(archs, scores)`` reports their score vectors (rows in objective member
    order, ``-inf`` for a failed candidate). The same seed and scores give the same run,
    whatever the number of processes that compute the scores.

    Args:
        space: the search space.
        objective: what to maximize.
        num_candidates: how many distinct architectures to score in all.
        seed: seed of the algorithm's generator.
        budget: FLOPs/params limits every candidate must meet.
        max_tries: attempts to draw one admissible, not yet scored architecture before giving up.
    """

    name = ""

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        num_candidates: int,
        *,
        seed: int = 0,
        budget: Budget | None = None,
        max_tries: int = 10_000,
    ) -> None:
        if not isinstance(num_candidates, int) or num_candidates < 1:
            raise ValueError(f"num_candidates must be a positive int, got {num_candidates!r}")
        self.space = space
        self.objective = objective
        self.num_candidates = num_candidates
        self.seed = seed
        self.budget = budget or Budget()
        self.max_tries = max_tries
        self.rng = np.random.default_rng(seed)
        self.history: list[tuple[Any, np.ndarray]] = []  # every scored arch, in order
        self.scores: dict[str, np.ndarray] = {}
        self.exhausted = False
        self._check_budget_reachable()

    # ------------------------------------------------------------------ protocol
    @abc.abstractmethod
    def ask(self) -> list[Any]:
        """Architectures to score next (empty when the search is done)."""

    def tell(self, archs: list[Any], scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64).reshape(len(archs), len(self.objective.members))
        for arch, row in zip(archs, scores, strict=True):
            key = self.space.encode(arch)
            if key in self.scores:
                raise AssertionError(f"{key} was scored twice")
            self.scores[key] = row
            self.history.append((arch, row))
        self._after_tell(archs, scores)

    def _after_tell(self, archs: list[Any], scores: np.ndarray) -> None:  # noqa: B027
        """Hook for algorithms that learn from each result."""

    @property
    def done(self) -> bool:
        return self.exhausted or len(self.history) >= self.num_candidates

    def ranking(self) -> list[tuple[Any, np.ndarray]]:
        """Every scored architecture, best first."""
        if not self.history:
            return []
        order = self.objective.order(np.stack([row for _, row in self.history]))
        return [self.history[i] for i in order]

    # ------------------------------------------------------------------ helpers
    def _remaining(self) -> int:
        return self.num_candidates - len(self.history)

    def _admissible(self, arch: Any) -> bool:
        return self.budget.admits(self.space, arch)

    def _draw_new(self, pending: set[str]) -> Any | None:
        """A random admissible architecture not yet scored nor pending; None when none is found."""
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            key = self.space.encode(arch)
            if key not in self.scores and key not in pending and self._admissible(arch):
                return arch
        return None

    def _check_budget_reachable(self) -> None:
        if self.budget.max_flops is None and self.budget.max_params is None:
            return
        probe = np.random.default_rng(self.seed + 7919)
        for _ in range(2_000):
            if self._admissible(self.space.sample(probe)):
                return
        raise ValueError(
            f"no architecture of space {self.space.name!r} within max_flops={self.budget.max_flops} and "
            f"max_params={self.budget.max_params} was found in 2,000 samples; raise the budget"
        )
