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
from nas.search.base import REGISTRY, Objective, SearchAlgorithm
from nas.spaces.base import SearchSpace

register = REGISTRY.register
available = REGISTRY.available
get = REGISTRY.get


def create(
    name: str,
    space: SearchSpace,
    objective: Objective,
    num_candidates: int,
    *,
    seed: int = 0,
    **kwargs: Any,
) -> SearchAlgorithm:
    """Instantiate the algorithm ``name`` (``ValueError`` listing the valid names otherwise).

    Candidates stay within ``space``'s budget: pass ``space.with_budget(max_flops, max_params)``.
    """
    return REGISTRY.get(name)(space, objective, num_candidates, seed=seed, **kwargs)


__all__ = ["REGISTRY", "Objective", "RandomSearch", "RegularizedEvolution", "Reinforce", "SearchAlgorithm",
           "available", "create", "get", "register"]  # fmt: skip
