"""Search algorithms with a common ask/tell shape and their own seeded generators.

Example:
    >>> import nas
    >>> from nas.search import Objective, create
    >>> algo = create("random", nas.spaces.get("nb201"), Objective("params"), num_candidates=4, seed=0)
    >>> archs = algo.ask()
    >>> len(archs)
    4
"""

from __future__ import annotations

from typing import Any

from nas.search.algorithms import RandomSearch, RegularizedEvolution, Reinforce
from nas.search.base import Budget, Objective, SearchAlgorithm
from nas.spaces.base import SearchSpace

ALGORITHMS: dict[str, type[SearchAlgorithm]] = {
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "reinforce": Reinforce,
}


def available() -> list[str]:
    """Names of the search algorithms."""
    return sorted(ALGORITHMS)


def create(
    name: str,
    space: SearchSpace,
    objective: Objective,
    num_candidates: int,
    *,
    seed: int = 0,
    budget: Budget | None = None,
    **kwargs: Any,
) -> SearchAlgorithm:
    """Instantiate the algorithm ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown search algorithm {name!r}; available: {', '.join(available())}")
    return ALGORITHMS[name](space, objective, num_candidates, seed=seed, budget=budget, **kwargs)


__all__ = ["ALGORITHMS", "Budget", "Objective", "RandomSearch", "RegularizedEvolution", "Reinforce",
           "SearchAlgorithm", "available", "create"]  # fmt: skip
