"""Running a search durably: scoring candidates, the results folder, resuming, the winner.

The folder of a search (``runs/search/<name>/``) holds:

- ``config.json``: the configuration that defines the run; a rerun with another refuses to mix.
- ``candidates.csv``: one row per scored candidate (arch, each proxy's value, FLOPs, params,
  seconds, error), appended and flushed as each is computed.
- ``winner.yaml``: the best architecture (see :class:`nas.winner.Winner`), at the end.
- ``search.png``: best score against candidates scored, and score against FLOPs.

A rerun of the same folder replays the (deterministic) search from its seed: every candidate
already in ``candidates.csv`` takes its stored scores instead of being scored again, so a run
killed at any point loses at most the candidate in flight and ends with the same winner as an
uninterrupted run.
"""

from __future__ import annotations

import csv
import gc
import json
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas import proxies
from nas.search.base import Objective, SearchAlgorithm
from nas.spaces.base import SearchSpace

FAILED = float("-inf")


@dataclass(frozen=True)
class Scored:
    """One scored candidate."""

    arch: str
    scores: tuple[float, ...]
    flops: int
    params: int
    seconds: float
    error: str = ""


def check_proxy_kwargs(objective: Objective, proxy_kwargs: dict[str, dict[str, Any]]) -> None:
    """Check per-member proxy options before any candidate is scored.

    Raises:
        ValueError: a name that is not a member of ``objective``, an option the proxy does not
            have, or a value outside an option's choices.
    """
    unknown = set(proxy_kwargs) - set(objective.members)
    if unknown:
        raise ValueError(f"proxy_kwargs names {sorted(unknown)}, which are not among the members {objective.members}")
    for name, options in proxy_kwargs.items():
        if not isinstance(options, dict):
            raise ValueError(f"proxy_kwargs[{name!r}] must be a mapping of options, got {options!r}")
        proxies.validate_options(name, options)


class CandidateScorer:
    """Builds a candidate at initialization and scores it with the objective's members.

    The network's initial weights are seeded from ``(seed, arch string)``, so a candidate gets
    the same score whichever process scores it and in whatever order. A candidate that fails
    to build or score (out of memory, an error in a proxy) is returned with ``-inf`` scores and
    the reason in ``error``.

    Args:
        space: the search space.
        objective: the proxy or vote; every member is computed once per candidate.
        inputs, targets: the scoring batch (the same for every candidate).
        num_classes: classifier outputs of the built networks.
        seed: initialization seed.
        proxy_kwargs: options per member, ``{"wrcor": {"split": 2}}``.
    """

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        num_classes: int,
        seed: int = 0,
        proxy_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        proxies.validate_batch(inputs, targets)
        self.space = space
        self.objective = objective
        self.inputs = inputs
        self.targets = targets
        self.num_classes = num_classes
        self.seed = seed
        self.proxy_kwargs = proxy_kwargs or {}
        self._resized: dict[int, torch.Tensor] = {}
        check_proxy_kwargs(objective, self.proxy_kwargs)

    def _inputs_at(self, resolution: int | None) -> torch.Tensor:
        """The scoring batch at a candidate's own input resolution (bilinear resize, cached)."""
        if resolution is None or tuple(self.inputs.shape[-2:]) == (resolution, resolution):
            return self.inputs
        if resolution not in self._resized:
            self._resized[resolution] = torch.nn.functional.interpolate(
                self.inputs, size=(resolution, resolution), mode="bilinear", align_corners=False
            )
        return self._resized[resolution]

    def __call__(self, arch: Any) -> Scored:
        key = self.space.encode(arch)
        flops, params = int(self.space.flops(arch)), int(self.space.params(arch))
        start = time.perf_counter()
        try:
            torch.manual_seed((self.seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)
            model = self.space.build(arch, num_classes=self.num_classes).to(self.inputs.device)
            inputs = self._inputs_at(getattr(arch, "resolution", None))
            values = []
            for name in self.objective.members:
                result = proxies.score(name, model, inputs, self.targets, **self.proxy_kwargs.get(name, {}))
                values.append(float(result.score))
            error = ""
        except (RuntimeError, ValueError, MemoryError, torch.OutOfMemoryError) as err:
            values = [FAILED] * len(self.objective.members)
            error = f"{type(err).__name__}: {err}".replace("\n", " ")[:500]
        finally:
            model = None
            gc.collect()
            if self.inputs.is_cuda:
                torch.cuda.empty_cache()
        return Scored(key, tuple(values), flops, params, time.perf_counter() - start, error)


class RunFolder:
    """The results folder of one search; see the module docstring.

    Args:
        path: the folder.
        config: what defines the run (space, proxy, algorithm, seed, budgets, ...).
        members: proxy names, the score columns.
        overwrite: delete a previous run with a different config instead of refusing.
        writer: whether this process writes files (rank 0 under DDP).
    """

    def __init__(
        self, path: str | Path, config: dict[str, Any], members: Sequence[str], *, overwrite: bool = False, writer: bool = True
    ) -> None:
        self.path = Path(path)
        self.members = tuple(members)
        self.writer = writer
        self.header = ["n", "arch", *self.members, "flops", "params", "seconds", "error"]
        config = json.loads(json.dumps(config, default=str))
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            old = json.loads(cfg_file.read_text())
            if old != config:
                if not overwrite:
                    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                    raise ValueError(
                        f"{self.path} holds a search with a different configuration (differs in: "
                        f"{', '.join(diff)}); choose another output folder or pass overwrite=True "
                        "to start over"
                    )
                if writer:
                    shutil.rmtree(self.path)
        self.stored: dict[str, Scored] = self._load() if (self.path / "candidates.csv").exists() else {}
        if writer:
            self.path.mkdir(parents=True, exist_ok=True)
            cfg_file.write_text(json.dumps(config, indent=2, sort_keys=True))
        self._file = None
        self._csv: csv.DictWriter | None = None
        self.count = len(self.stored)

    def _load(self) -> dict[str, Scored]:
        out: dict[str, Scored] = {}
        with (self.path / "candidates.csv").open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != self.header:
                raise ValueError(f"{self.path / 'candidates.csv'} has columns {reader.fieldnames}, expected {self.header}")
            for row in reader:
                try:
                    scored = Scored(
                        row["arch"], tuple(float(row[m]) for m in self.members), int(row["flops"]),
                        int(row["params"]), float(row["seconds"]), row["error"],
                    )  # fmt: skip
                except (TypeError, ValueError):
                    continue  # a row cut short by a kill: its candidate is scored again
                out[scored.arch] = scored
        return out

    def append(self, scored: Scored) -> None:
        """Write one row and flush it to the operating system at once."""
        if scored.arch in self.stored:
            return
        self.stored[scored.arch] = scored
        self.count += 1
        if not self.writer:
            return
        if self._file is None:
            path = self.path / "candidates.csv"
            new = not path.exists() or path.stat().st_size == 0
            if not new and not path.read_bytes().endswith(b"\n"):
                with path.open("a") as f:  # a partial last line from a kill: close it off
                    f.write("\n")
            self._file = path.open("a", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=self.header)
            if new:
                self._csv.writeheader()
        row = {"n": self.count, "arch": scored.arch, "flops": scored.flops, "params": scored.params,
               "seconds": f"{scored.seconds:.4f}", "error": scored.error}  # fmt: skip
        row.update({m: repr(v) for m, v in zip(self.members, scored.scores, strict=True)})
        self._csv.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class SearchResult:
    """The ranking of a finished search."""

    ranking: list[tuple[str, tuple[float, ...]]]
    scored: list[Scored] = field(default_factory=list)
    newly_scored: int = 0

    @property
    def winner(self) -> str:
        return self.ranking[0][0]


#: ``map_fn(archs, on_result) -> list[Scored]``: scores ``archs`` (possibly across processes),
#: calling ``on_result`` with each result as soon as it is known to this process.
MapFn = Callable[[list[Any], Callable[[Scored], None]], list[Scored]]


def serial_map(scorer: CandidateScorer) -> MapFn:
    def run(archs: list[Any], on_result: Callable[[Scored], None]) -> list[Scored]:
        out = []
        for arch in archs:
            scored = scorer(arch)
            on_result(scored)
            out.append(scored)
        return out

    return run


def run_search(
    algorithm: SearchAlgorithm,
    folder: RunFolder,
    map_fn: MapFn,
    *,
    top_k: int = 10,
    on_progress: Callable[[int, int, Scored | None], None] | None = None,
) -> SearchResult:
    """Drive ``algorithm`` until done, scoring only what ``folder`` has not stored yet."""
    space = algorithm.space
    newly = 0
    order: list[Scored] = []
    try:
        while not algorithm.done:
            archs = algorithm.ask()
            if not archs:
                break
            keys = [space.encode(a) for a in archs]
            todo = [a for a, k in zip(archs, keys, strict=True) if k not in folder.stored]

            def on_result(scored: Scored) -> None:
                folder.append(scored)
                if on_progress is not None:
                    on_progress(folder.count, algorithm.num_candidates, scored)

            for scored in map_fn(todo, on_result):
                folder.append(scored)
                newly += 1
            batch = [folder.stored[k] for k in keys]
            order.extend(batch)
            algorithm.tell(archs, np.array([s.scores for s in batch], dtype=np.float64))
            if on_progress is not None:
                on_progress(folder.count, algorithm.num_candidates, None)
    finally:
        folder.close()
    ranked = algorithm.ranking()[:top_k]
    return SearchResult([(space.encode(a), tuple(row.tolist())) for a, row in ranked], order, newly)


def plot_search(scored: Iterable[Scored], objective: Objective, path: Path) -> None:
    """Best score against candidates scored, and score against FLOPs (first member for votes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(scored)
    if not rows:
        return
    matrix = np.array([r.scores for r in rows], dtype=np.float64)
    flops = np.array([r.flops for r in rows], dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    label = objective.name
    if objective.vote is None:
        value = matrix[:, 0]
        best = np.maximum.accumulate(np.where(np.isfinite(value), value, -np.inf))
    else:  # running winner's fitness is not monotone for votes: plot its rank-average instead
        from nas.proxies.vote import rank_average

        value = rank_average(matrix)
        best = np.maximum.accumulate(value)
        label = f"{objective.name} (rank average of {', '.join(objective.members)})"
    ok = np.isfinite(best)
    ax1.plot(np.arange(1, len(rows) + 1)[ok], best[ok])
    ax1.set_xlabel("candidates scored")
    ax1.set_ylabel(f"best {label}")
    fin = np.isfinite(value)
    ax2.scatter(flops[fin] / 1e6, value[fin], s=5, alpha=0.6)
    ax2.set_xlabel("MFLOPs (multiply-accumulates)")
    ax2.set_ylabel(label)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

