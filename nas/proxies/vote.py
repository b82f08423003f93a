"""Voting proxies: a hard pairwise majority vote over member proxies' scores, and rank averaging.

Jing et al. (WRCor paper): architecture A beats B when **more than half** of the member proxies
prefer A. A member prefers A when its score for A is strictly larger; equal scores (``-inf``
against ``-inf`` included) are no preference, and ``-inf`` loses to every finite score. Ranking
a set by this comparator is done by Copeland counting: each architecture's number of majority
wins against the others in the set.

Nothing here computes a proxy: a vote only combines member scores that were computed elsewhere
(see :func:`nas.proxies.many.score_many`), given as a matrix of shape ``(n_archs, n_members)`` in
member order.

Example:
    >>> import numpy as np
    >>> from nas.proxies.vote import get_vote
    >>> sjw = get_vote("sjw")
    >>> sjw.members
    ('synflow', 'jacob_cov', 'wrcor')
    >>> sjw.beats([3.0, -1.0, 5.0], [2.0, 0.0, 4.0])
    True
    >>> sjw.order(np.array([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0], [2.0, 2.0, 2.0]])).tolist()
    [2, 1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from nas.proxies import baselines, wrcor  # noqa: F401  (the default votes' members must be registered)
from nas.proxies.base import available

#: Largest number of pairwise comparisons held in memory at once by :meth:`Vote.wins`.
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


@dataclass(frozen=True)
class Vote:
    """A hard pairwise-majority vote over registered proxies.

    Attributes:
        name: registry name of the vote.
        members: the member proxies, in the column order of every score matrix.
    """

    name: str
    members: tuple[str, ...]

    @property
    def majority(self) -> int:
        """Number of members that must prefer A for A to beat B (more than half)."""
        return len(self.members) // 2 + 1

    def beats(self, a_scores: Sequence[float], b_scores: Sequence[float]) -> bool:
        """Whether more than half of the members score ``a`` strictly above ``b``."""
        m = _matrix([a_scores, b_scores], len(self.members), f"vote {self.name!r}")
        return int((m[0] > m[1]).sum()) >= self.majority

    def wins(self, matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Copeland count: for each architecture, how many others it beats by majority.

        Args:
            matrix: member scores, shape ``(n_archs, n_members)`` in :attr:`members` order.

        Returns:
            ``int64`` array of length ``n_archs``. Pairwise comparisons are done in row chunks,
            so memory stays bounded (``n = 5000`` takes well under a second).
        """
        m = _matrix(matrix, len(self.members), f"vote {self.name!r}")
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

    def order(self, matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Architecture indices best-first: by majority wins, ties by rank average, then by index."""
        m = _matrix(matrix, len(self.members), f"vote {self.name!r}")
        wins = self.wins(m)
        avg = rank_average(m) if m.shape[0] else np.zeros(0)
        return np.lexsort((np.arange(m.shape[0]), -avg, -wins))


_VOTES: dict[str, Vote] = {}


def register_vote(name: str, members: Sequence[str]) -> Vote:
    """Register the vote ``name`` over registered proxies ``members``.

    Raises:
        ValueError: fewer than two members, a repeated or unknown member (the message lists the
            registered proxies), or ``name`` already used by a vote or a proxy.
    """
    members = tuple(members)
    if name in _VOTES:
        raise ValueError(f"vote {name!r} is already registered")
    if name in available():
        raise ValueError(f"{name!r} is a registered proxy; a vote needs its own name")
    if len(members) < 2:
        raise ValueError(f"vote {name!r} needs at least two members, got {list(members)}")
    if len(set(members)) != len(members):
        raise ValueError(f"vote {name!r} repeats a member: {list(members)}")
    unknown = [m for m in members if m not in available()]
    if unknown:
        raise ValueError(
            f"vote {name!r}: unknown member(s) {unknown}; registered proxies: {', '.join(available())}"
        )
    vote = Vote(name, members)
    _VOTES[name] = vote
    return vote


def get_vote(name: str) -> Vote:
    """The vote registered as ``name``; ``ValueError`` listing the known votes otherwise."""
    try:
        return _VOTES[name]
    except KeyError:
        raise ValueError(f"unknown vote {name!r}; available votes: {', '.join(available_votes())}") from None


def available_votes() -> list[str]:
    """Names of the registered votes."""
    return sorted(_VOTES)


register_vote("sjw", ("synflow", "jacob_cov", "wrcor"))
register_vote("spw", ("synflow", "l2_norm", "wrcor"))
