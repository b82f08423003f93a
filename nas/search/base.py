"""What every search algorithm shares: the objective and the ask/tell protocol (budgets are the space's)."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from nas import proxies
from nas.proxies.aggregate import Aggregate
from nas.registry import Registry
from nas.spaces.base import SearchSpace


class Objective:
    """What a search maximizes: one registered single proxy, or an aggregate of several.

    A candidate's scores are a vector in :attr:`members` order. For a single proxy its fitness
    is that score. For an aggregate it is relative to a population: the aggregate's value of the
    candidate among the rows it is ranked with (:meth:`fitness`). How each algorithm forms that
    population is part of its definition:

    - random search ranks every scored candidate together at the end;
    - regularized evolution ranks each tournament's contestants among themselves;
    - REINFORCE rewards a candidate with the z-score of its fitness among every candidate
      scored so far (itself included), see :meth:`reward`.

    Args:
        proxy: a registered proxy or aggregate name (``nas.proxies.available()``).
    """

    def __init__(self, proxy: str) -> None:
        self.name = proxy
        spec = proxies.get(proxy)  # ValueError listing every proxy and aggregate
        self.aggregate: Aggregate | None = spec if isinstance(spec, Aggregate) else None
        self.members: tuple[str, ...] = tuple(spec.members)

    def fitness(self, matrix: np.ndarray) -> np.ndarray:
        """Fitness of each row of ``matrix`` (n x members) within that set; larger is better."""
        matrix = np.asarray(matrix, dtype=np.float64).reshape(-1, len(self.members))
        if self.aggregate is None:
            return matrix[:, 0].copy()
        order = self.aggregate.order(matrix)
        fit = np.empty(len(matrix))
        fit[order] = np.arange(len(matrix), 0, -1, dtype=np.float64)
        return fit

    def order(self, matrix: np.ndarray) -> np.ndarray:
        """Row indices best-first (stable: earlier rows win ties)."""
        return np.argsort(-self.fitness(matrix), kind="stable")

    def best(self, matrix: np.ndarray) -> int:
        return int(self.order(matrix)[0])

    def reward(self, row: np.ndarray, seen: np.ndarray) -> float | None:
        """REINFORCE's reward of ``row`` given the population ``seen`` (rows scored so far, ``row`` among them).

        A single proxy: the z-score of its value among the finite values seen. An aggregate: the
        z-score of the candidate's fitness within ``seen``. None for a failed candidate (a
        non-finite score), which teaches nothing.
        """
        row = np.asarray(row, dtype=np.float64)
        if not np.isfinite(row).all():
            return None
        seen = np.asarray(seen, dtype=np.float64).reshape(-1, len(self.members))
        seen = seen[np.isfinite(seen).all(axis=1)]
        if self.aggregate is None:
            values, mine = seen[:, 0], float(row[0])
        else:
            fit = self.fitness(np.vstack([seen, row]))
            values, mine = fit[:-1], float(fit[-1])
        std = float(values.std()) if len(values) else 0.0
        return 0.0 if std == 0 else (mine - float(values.mean())) / std


class SearchAlgorithm(abc.ABC):
    """A search with its own seeded generator and an ask/tell loop.

    ``ask()`` returns architectures to score, never one already scored (architectures with the
    same :meth:`SearchSpace.key` build the same network and count as one), all within the budget; ``tell(archs, scores)`` reports their score vectors (rows in objective member
    order, ``-inf`` for a failed candidate). The same seed and scores give the same run,
    whatever the number of processes that compute the scores.

    Args:
        space: the search space; its budget (:meth:`SearchSpace.with_budget`) bounds every candidate.
        objective: what to maximize.
        num_candidates: how many distinct architectures to score in all.
        seed: seed of the algorithm's generator.
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
        max_tries: int = 10_000,
    ) -> None:
        if not isinstance(num_candidates, int) or num_candidates < 1:
            raise ValueError(f"num_candidates must be a positive int, got {num_candidates!r}")
        self.space = space
        self.objective = objective
        self.num_candidates = num_candidates
        self.seed = seed
        self.max_tries = max_tries
        self.rng = np.random.default_rng(seed)
        self.history: list[tuple[Any, np.ndarray]] = []  # every scored arch, in order
        self.scores: dict[str, np.ndarray] = {}
        self.exhausted = False

    # ------------------------------------------------------------------ protocol
    @abc.abstractmethod
    def ask(self) -> list[Any]:
        """Architectures to score next (empty when the search is done)."""

    def tell(self, archs: list[Any], scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64).reshape(len(archs), len(self.objective.members))
        for arch, row in zip(archs, scores, strict=True):
            key = self.space.key(arch)
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

    def _draw_new(self, pending: set[str]) -> Any | None:
        """A random architecture within the space's budget, not yet scored nor pending; None when none is found."""
        for _ in range(self.max_tries):
            arch = self.space.sample_within(self.rng)
            key = self.space.key(arch)
            if key not in self.scores and key not in pending:
                return arch
        return None


#: The search algorithms: each entry is a :class:`SearchAlgorithm` subclass.
REGISTRY: Registry[type[SearchAlgorithm]] = Registry("search algorithm")
