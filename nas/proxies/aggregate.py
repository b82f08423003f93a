"""Aggregates: rankings of a population combined from several member proxies.

An aggregate is a proxy of its own kind, registered by name beside the single measures
(``nas.proxies.available("aggregate")``). It never computes anything on a network: its members
are scored once per network (:func:`nas.proxies.score_many`, shared passes), and the aggregate
combines the members' scores of a **population** (a search's candidates, a benchmark sample),
given as a matrix of shape ``(n_archs, n_members)`` in member order. Its value for one
architecture is therefore relative to the population it is ranked in.

Rules (``Aggregate.rule``):

- ``"vote"``: hard pairwise majority (Jing et al., the WRCor paper): A beats B when **more than
  half** of the members score A strictly higher; equal scores (``-inf`` against ``-inf``
  included) are no preference and ``-inf`` loses to every finite score. An architecture's value
  is its Copeland count (majority wins against the others); ties by mean rank.
- ``"log_rank"``: AZ-NAS (Lee & Ham, CVPR 2024): the sum over members of ``log(rank / n)``, where
  ``rank`` is the architecture's rank within the population by that member (1 = worst, ``n`` =
  best; ties share the average rank). The best architecture of every member scores 0.
- ``"mean_rank"``: the mean over members of the ranks (1 = worst), i.e. Borda count.

Example:
    >>> import numpy as np
    >>> from nas import proxies
    >>> sjw = proxies.get("sjw")
    >>> sjw.members, sjw.rule
    (('synflow', 'jacob_cov', 'wrcor'), 'vote')
    >>> sjw.beats([3.0, -1.0, 5.0], [2.0, 0.0, 4.0])
    True
    >>> sjw.order(np.array([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0], [2.0, 2.0, 2.0]])).tolist()
    [2, 1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy import stats

from nas.proxies import aznas, baselines, cost, layers, meco, swap, tenas, vkdnw, wrcor  # noqa: F401  (the built-in aggregates' members)
from nas.proxies.base import REGISTRY, ProxySpec

#: Largest number of pairwise comparisons held in memory at once by :meth:`Aggregate.wins`.
CHUNK_ELEMENTS = 1 << 22


def _matrix(matrix: np.ndarray | Sequence[Sequence[float]], columns: int, who: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != columns:
        raise ValueError(f"{who}: expected a score matrix of shape (n_archs, {columns}), got {m.shape}")
    if np.isnan(m).any():
        rows = sorted(set(np.argwhere(np.isnan(m))[:, 0].tolist()))[:5]
        raise ValueError(f"{who}: scores contain NaN (rows {rows}...); proxies report failures as -inf, never NaN")
    return m


def rank_average(matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Mean over columns of each row's rank within its column (1 = worst; ties share the average).

    A general aggregator of several proxies' scores (``matrix`` of shape ``(n_archs, n_proxies)``);
    larger is better, ``-inf`` ranks lowest.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 1:
        raise ValueError(f"rank_average: expected a score matrix of shape (n_archs, n_proxies), got {m.shape}")
    m = _matrix(m, m.shape[1], "rank_average")
    return stats.rankdata(m, axis=0, method="average").mean(axis=1)


Rule = Literal["vote", "log_rank", "mean_rank"]
RULES: tuple[str, ...] = get_args(Rule)


@dataclass(frozen=True)
class Aggregate:
    """A registered aggregate of member proxies under one rule (see the module docstring).

    Attributes:
        name: registry name.
        members: the member proxies, in the column order of every score matrix.
        rule: ``"vote"``, ``"log_rank"`` or ``"mean_rank"``.
        description: one line for listings.
    """

    name: str
    members: tuple[str, ...]
    rule: Rule = "vote"
    description: str = ""

    kind = "aggregate"

    @property
    def majority(self) -> int:
        """Number of members that must prefer A for A to beat B under ``"vote"`` (more than half)."""
        return len(self.members) // 2 + 1

    def beats(self, a_scores: Sequence[float], b_scores: Sequence[float]) -> bool:
        """Whether more than half of the members score ``a`` strictly above ``b``."""
        m = _matrix([a_scores, b_scores], len(self.members), f"aggregate {self.name!r}")
        return int((m[0] > m[1]).sum()) >= self.majority

    def wins(self, matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Copeland count: for each architecture, how many others it beats by majority.

        Pairwise comparisons are done in row chunks, so memory stays bounded (``n = 5000``
        takes well under a second). Returns an ``int64`` array of length ``n_archs``.
        """
        m = _matrix(matrix, len(self.members), f"aggregate {self.name!r}")
        n = m.shape[0]
        out = np.zeros(n, dtype=np.int64)
        rows = max(1, CHUNK_ELEMENTS // max(1, n * len(self.members)))
        for lo in range(0, n, rows):
            block = m[lo : lo + rows]
            prefer = np.zeros((block.shape[0], n), dtype=np.int16)
            for j in range(len(self.members)):
                prefer += block[:, j, None] > m[None, :, j]
            out[lo : lo + rows] = (prefer >= self.majority).sum(axis=1)
        return out

    def scores(self, matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Each architecture's value within the population ``matrix`` (larger is better)."""
        m = _matrix(matrix, len(self.members), f"aggregate {self.name!r}")
        if m.shape[0] == 0:
            return np.zeros(0)
        if self.rule == "vote":
            return self.wins(m).astype(np.float64)
        ranks = stats.rankdata(m, axis=0, method="average")
        if self.rule == "log_rank":
            return np.log(ranks / m.shape[0]).sum(axis=1)
        return ranks.mean(axis=1)

    def order(self, matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Architecture indices best-first: by :meth:`scores`, ties by mean rank, then by index."""
        m = _matrix(matrix, len(self.members), f"aggregate {self.name!r}")
        if m.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        return np.lexsort((np.arange(m.shape[0]), -rank_average(m), -self.scores(m)))


def register_aggregate(name: str, members: Sequence[str], rule: Rule = "vote", description: str = "") -> Aggregate:
    """Register the aggregate ``name`` of registered single proxies ``members`` under ``rule``.

    Raises:
        ValueError: fewer than two members, a repeated member, an unknown member or one that
            is itself an aggregate (naming it and listing the registered proxies), an unknown
            rule, or ``name`` already registered.
    """
    members = tuple(members)
    if rule not in RULES:
        raise ValueError(f"aggregate {name!r}: unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    if len(members) < 2:
        raise ValueError(f"aggregate {name!r} needs at least two members, got {list(members)}")
    if len(set(members)) != len(members):
        raise ValueError(f"aggregate {name!r} repeats a member: {list(members)}")
    singles = [n for n in REGISTRY.available() if isinstance(REGISTRY.get(n), ProxySpec)]
    nested = [m for m in members if m in REGISTRY and m not in singles]
    if nested:
        raise ValueError(f"aggregate {name!r}: {nested} are aggregates; the members of an aggregate are single proxies")
    unknown = [m for m in members if m not in singles]
    if unknown:
        raise ValueError(f"aggregate {name!r}: unknown member(s) {unknown}; registered proxies: {', '.join(singles)}")
    agg = Aggregate(name, members, rule, description or f"{rule} of {', '.join(members)}")
    REGISTRY.add(name, agg)
    return agg


register_aggregate("sjw", ("synflow", "jacob_cov", "wrcor"), "vote",
                   "SJW (WRCor paper): majority vote of SynFlow, JacCor and WRCor")  # fmt: skip
register_aggregate("spw", ("synflow", "l2_norm", "wrcor"), "vote",
                   "SPW (WRCor paper): majority vote of SynFlow, PNorm and WRCor")  # fmt: skip
register_aggregate("az_nas", ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity"), "log_rank",
                   "AZ-NAS (Lee & Ham, CVPR 2024): sum of log relative ranks of its four measures")  # fmt: skip
register_aggregate("vkdnw_agg", ("vkdnw_single", "az_expressivity", "az_trainability", "az_complexity", "jacob_cov"),
                   "log_rank", "VKDNW_agg (Tybl & Neumann, CVPR 2025): sum of log relative ranks of VKDNW's "
                   "single ranking, expressivity, trainability, FLOPs and JacCor")  # fmt: skip
register_aggregate("meco_swap_az", ("meco", "meco_opt", "swap", "az_trainability"), "log_rank",
                   "The log-rank aggregate chosen on half of seed 0's NAS-Bench-201 cells among 3,196 combinations "
                   "(benchmarks/aggregate_selection.py); held-out CIFAR-10 rho 0.928")  # fmt: skip
