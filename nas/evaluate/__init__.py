"""Evaluate proxies against a search space's ground truth, through the product's scorer.

A benchmark evaluation is a search space's ground-truth table plus the one scoring path of
:mod:`nas.search.runner`: the cells to evaluate are handed to :func:`nas.search.runner.run_search`
by a fixed-list algorithm (:class:`CellList`), scored by :class:`~nas.search.runner.CandidateScorer`
(every proxy of every cell in one :func:`nas.proxies.score_many` call, shared passes, failures
recorded per proxy) and stored by a :class:`~nas.search.runner.RunFolder`, so a rerun resumes and
stored folders of other runs with the same scoring settings serve as caches.

Metrics (:func:`metrics`), each against the table's true accuracy, ``-inf`` ranking lowest:
Kendall tau, Spearman rho, nDCG@1000 (VKDNW's: gain ``2 ** accuracy - 1``, see :func:`ndcg`), the mean true accuracy of the proxy's top-10 and top-100 cells, and
the random-search expectation (:func:`search_expectation`). An aggregate is ranked within the
population it is evaluated on (each seed's sample; each random-search draw).

The command line is ``python -m nas.evaluate`` (see :mod:`nas.evaluate.__main__`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from nas import proxies
from nas.data import BenchmarkTable
from nas.search.base import Objective, SearchAlgorithm
from nas.search.runner import CandidateScorer, InitPolicy, RunFolder, Scored, run_search, serial_map
from nas.spaces.base import SearchSpace


class CellList(SearchAlgorithm):
    """The "search" of an evaluation: hands out a fixed list of architectures, in order.

    Args:
        space: the space the architectures belong to.
        archs: the architectures to score.
        chunk: architectures per ``ask``.
    """

    name = "cells"

    def __init__(self, space: SearchSpace, archs: Sequence[Any], members: Sequence[str], *, chunk: int = 64) -> None:
        objective = Objective(members[0])
        objective.members = tuple(members)
        super().__init__(space, objective, max(1, len(archs)))
        self.archs = list(archs)
        self.chunk = chunk
        self._next = 0

    def ask(self) -> list[Any]:
        out = self.archs[self._next : self._next + self.chunk]
        self._next += len(out)
        if not out:
            self.exhausted = True
        return out


def sample_rows(table: BenchmarkTable, n: int | None, seed: int) -> list[int]:
    """``n`` distinct rows of ``table`` drawn with ``seed``, sorted (every row when ``n`` is None)."""
    if n is None:
        return list(range(len(table)))
    if not 1 <= n <= len(table):
        raise ValueError(f"--n must be in [1, {len(table)}] (the rows of the table), got {n}")
    return sorted(np.random.default_rng(seed).choice(len(table), size=n, replace=False).tolist())


def scoring_folder_config(scorer: CandidateScorer) -> dict[str, Any]:
    """The run-folder config of an evaluation: its scoring settings, no search settings."""
    return {"scoring": scorer.config(), "search": {}}


def score_cells(
    space: SearchSpace,
    archs: Sequence[Any],
    names: Sequence[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    out: Path,
    num_classes: int = 10,
    init: InitPolicy = "benchmark_index",
    init_seed: int = 0,
    proxy_kwargs: dict[str, dict[str, Any]] | None = None,
    reference_timing: bool = True,
    caches: Sequence[Path] = (),
    score: bool = True,
    on_progress: Callable[[int, int, Scored | None], None] | None = None,
) -> tuple[dict[str, Scored], int]:
    """Score ``archs`` with the proxies ``names`` (aggregates expand to their members).

    Returns the scored candidates by architecture string and how many were scored now. With
    ``score=False`` nothing is computed: the result holds what ``out`` and ``caches`` store.
    """
    members = proxies.expand(names)
    scorer = CandidateScorer(space, members, inputs, targets, num_classes=num_classes, seed=init_seed,
                             proxy_kwargs=proxy_kwargs, init=init, reference_timing=reference_timing)  # fmt: skip
    folder = RunFolder(out, scoring_folder_config(scorer), members, caches=caches,
                       restart_hint="delete the folder")  # fmt: skip
    if not score:
        found: dict[str, Scored] = dict(folder.stored)
        for key, values in folder.cached.items():
            if key not in found and len(values) == len(members):
                found[key] = Scored(key, tuple(values[m] for m in members), 0, 0, math.nan)
        folder.close()
        return found, 0
    algo = CellList(space, archs, members)
    result = run_search(algo, folder, serial_map(scorer), top_k=1, on_progress=on_progress)
    return dict(folder.stored), result.newly_scored


# ---------------------------------------------------------------------------------------- metrics
def _floor(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; proxies report failures as -inf, never NaN")
    finite_floor = np.min(s[np.isfinite(s)]) - 1.0 if np.isfinite(s).any() else 0.0
    return np.where(np.isneginf(s), finite_floor, s)


def rank_correlations(scores: Sequence[float], truth: Sequence[float]) -> tuple[float, float]:
    """Kendall tau and Spearman rho of ``scores`` against ``truth`` (-inf scores rank lowest)."""
    s, t = _floor(np.asarray(scores)), np.asarray(truth, dtype=np.float64)
    return float(stats.kendalltau(s, t).statistic), float(stats.spearmanr(s, t).statistic)


def ndcg(scores: Sequence[float], truth: Sequence[float], k: int = 1000) -> float:
    """nDCG@k as VKDNW (Tybl & Neumann, CVPR 2025) computes it.

    The gain of a cell is ``2 ** accuracy - 1`` with the accuracy in percent, so a point of
    accuracy doubles the gain and the metric rewards the very top of the ranking; the discount
    of rank ``j`` (1 = best score) is ``1 / log2(j + 1)``; the top ``k`` ranks count (their
    code: scikit-learn's ``ndcg_score(2 ** acc - 1, score, k=1000)``), tied scores share their
    block's mean gain, and the sum is divided by the ideal ordering's.
    """
    s, t = _floor(np.asarray(scores)), np.asarray(truth, dtype=np.float64)
    gain = np.exp2(t) - 1.0
    n = len(s)
    k = min(k, n)
    discount = 1.0 / np.log2(np.arange(2, n + 2))
    discount[k:] = 0.0
    cum = np.concatenate([[0.0], np.cumsum(discount)])
    order = np.argsort(-s, kind="stable")
    s_sorted, g_sorted = s[order], gain[order]
    dcg, start = 0.0, 0
    while start < k:  # blocks of tied scores share their mean gain
        end = start + 1
        while end < n and s_sorted[end] == s_sorted[start]:
            end += 1
        dcg += g_sorted[start:end].mean() * (cum[end] - cum[start])
        start = end
    ideal = float((np.sort(gain)[::-1] * discount).sum())
    return float(dcg / ideal) if ideal > 0 else 0.0


def top_mean(scores: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Mean true accuracy of the ``k`` best-scored architectures (ties by order given)."""
    s, t = _floor(np.asarray(scores)), np.asarray(truth, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    return float(t[order[: min(k, len(t))]].mean())


def search_expectation(
    matrix: np.ndarray,
    truth: np.ndarray,
    rank: Callable[[np.ndarray], np.ndarray],
    *,
    n: int = 1000,
    draws: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Random search's expected winner: mean (and standard error) of the true accuracy of the
    best of ``n`` cells drawn without replacement from the scored set, over ``draws`` draws.

    Args:
        matrix: member scores of the scored set, ``(cells, members)``.
        truth: true accuracy of each cell.
        rank: ``matrix -> values`` (larger is better) within one draw: a single proxy's column,
            or an aggregate ranked within the drawn population.
        n: candidates per random search (at most the scored set's size).
        draws: random searches.
        seed: seed of the draws (``numpy.random.default_rng``).
    """
    matrix, truth = np.asarray(matrix, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    n = min(n, len(truth))
    rng = np.random.default_rng(seed)
    wins = np.empty(draws)
    for d in range(draws):
        idx = rng.choice(len(truth), size=n, replace=False)
        values = _floor(rank(matrix[idx]))
        wins[d] = truth[idx[int(np.argmax(values))]]
    return float(wins.mean()), float(wins.std(ddof=1) / math.sqrt(draws)) if draws > 1 else 0.0


def column_ranker(name: str, members: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """``matrix -> values`` of the proxy or aggregate ``name`` over a population's member scores."""
    spec = proxies.get(name)
    cols = [members.index(m) for m in spec.members]
    if isinstance(spec, proxies.Aggregate):
        return lambda m: spec.scores(m[:, cols])
    return lambda m: m[:, cols[0]]


@dataclass(frozen=True)
class Metrics:
    """One proxy on one sample against one dataset's truth."""

    tau: float
    rho: float
    ndcg: float
    top10: float
    top100: float


def metrics(values: np.ndarray, truth: np.ndarray) -> Metrics:
    """Every rank metric of ``values`` against ``truth`` (see the module docstring)."""
    tau, rho = rank_correlations(values, truth)
    return Metrics(tau, rho, ndcg(values, truth), top_mean(values, truth, 10), top_mean(values, truth, 100))


def export_nbsz(path: Path, archs: Sequence[str], members: Sequence[str], scored: dict[str, Scored],
                table: BenchmarkTable, datasets: dict[str, str]) -> None:
    """Write NAS-Bench-Suite-Zero's ``zc_<benchmark>.json`` layout.

    ``dataset -> architecture string -> {proxy: {"score", "time"}, "val_accuracy"}``; a failed
    proxy has ``"score": null`` with its ``"error"``. ``datasets`` maps the table's dataset
    names to the file's keys.
    """
    data: dict[str, dict] = {}
    row_of = {a: i for i, a in enumerate(table.arch)}
    for ours, key in datasets.items():
        data[key] = {}
        for a in archs:
            s = scored[a]
            secs = s.member_seconds or (math.nan,) * len(members)
            entry: dict[str, Any] = {}
            for m, v, t in zip(members, s.scores, secs, strict=True):
                entry[m] = {"score": None, "time": t, "error": s.errors[m]} if m in s.errors else {"score": v, "time": t}
            entry["val_accuracy"] = float(table.accuracy[ours][row_of[a]])
            data[key][a] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


__all__ = [
    "CellList", "Metrics", "column_ranker", "export_nbsz", "metrics", "ndcg", "rank_correlations",
    "sample_rows", "score_cells", "scoring_folder_config", "search_expectation", "top_mean",
]  # fmt: skip
