"""Running a search durably: scoring candidates, the results folder, resuming, the winner.

This is the package's one scoring path: every search candidate and every benchmark cell is
scored by :class:`CandidateScorer` (budget, seeded initialization under a named policy, every
member through :func:`nas.proxies.score_many`'s shared passes, failures recorded) and stored
by a :class:`RunFolder`, driven by :func:`run_search`'s ask/tell loop.

The folder of a run (``runs/search/<name>/``) holds:

- ``config.json``: what defines the run's scores (see :func:`scoring_config`) and the search;
  a rerun with other settings is refused, naming the differing keys.
- ``candidates.csv``: one row per scored candidate (arch, each proxy's value and seconds,
  multiply-accumulates ``macs``, ``num_params``, seconds, the reference forward+backward time, errors), appended and flushed as
  each is computed.
- ``winner.yaml``: the best architecture (see :class:`nas.winner.Winner`), at the end.
- ``search.png``: best score against candidates scored, and score against FLOPs.

A rerun of the same folder replays the (deterministic) search from its seed: every candidate
already in ``candidates.csv`` takes its stored scores instead of being scored again, so a run
killed at any point loses at most the candidate in flight and ends with the same winner as an
uninterrupted run. Stored scores of other folders (``caches``) with the same scoring settings
are reused member by member; only missing members are computed.
"""

from __future__ import annotations

import csv
import gc
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from nas import proxies
from nas.search.base import Objective, SearchAlgorithm
from nas.spaces.base import SearchSpace

FAILED = float("-inf")
#: How a candidate's initial weights are seeded (``torch.manual_seed`` right before it is built):
#:
#: - ``"arch_hash"`` (the product's default): ``seed * 1_000_003 + crc32(arch string)``, so a
#:   candidate gets the same weights whichever process scores it, in whatever order;
#: - ``"benchmark_index"``: ``seed * 1_000_003 + space.index(arch)`` (the benchmark's own index of
#:   the cell), the rule of the stored NAS-Bench-201 evaluation tables, to reproduce them.
InitPolicy = Literal["arch_hash", "benchmark_index"]
INIT_POLICIES: tuple[str, ...] = get_args(InitPolicy)


def init_seed(policy: InitPolicy, seed: int, space: SearchSpace, arch: Any) -> int:
    """The ``torch.manual_seed`` value of ``arch`` under ``policy`` (see :data:`InitPolicy`)."""
    if policy == "arch_hash":
        return (seed * 1_000_003 + zlib.crc32(space.encode(arch).encode())) % 2**63
    if policy == "benchmark_index":
        index = getattr(space, "index", None)
        if index is None:
            raise ValueError(f"init policy 'benchmark_index' needs a space with a benchmark index; {space.name!r} has none")
        return seed * 1_000_003 + int(index(arch))
    raise ValueError(f"unknown init policy {policy!r}; expected one of {', '.join(INIT_POLICIES)}")


def batch_digest(inputs: torch.Tensor, targets: torch.Tensor | None) -> str:
    """A short hash of the scoring batch's values, shapes and dtypes (part of a run's fingerprint)."""
    h = hashlib.sha256()
    for t in (inputs, targets):
        if t is None:
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Scored:
    """One scored candidate.

    Attributes:
        arch: the architecture string.
        scores: one value per member (``-inf`` for a failed member).
        flops, params: the analytic cost.
        seconds: wall time of building and scoring it.
        errors: ``{member: "ExceptionType: message"}`` for the members that failed.
        member_seconds: each member's seconds (a shared pass counts for every member in it).
        fwd_bwd: seconds of one plain forward+backward of the same network (NaN when not timed).
    """

    arch: str
    scores: tuple[float, ...]
    flops: int
    params: int
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)
    member_seconds: tuple[float, ...] = ()
    fwd_bwd: float = math.nan


def check_proxy_kwargs(objective: Objective | Sequence[str], proxy_kwargs: dict[str, dict[str, Any]]) -> None:
    """Check per-member proxy options before any candidate is scored.

    Raises:
        ValueError: a name that is not a member of ``objective`` (an objective or the member
            names), an option the proxy does not have, or a value outside an option's choices.
    """
    members = tuple(objective.members if isinstance(objective, Objective) else objective)
    unknown = set(proxy_kwargs) - set(members)
    if unknown:
        raise ValueError(f"proxy_kwargs names {sorted(unknown)}, which are not among the members {members}")
    for name, options in proxy_kwargs.items():
        if not isinstance(options, dict):
            raise ValueError(f"proxy_kwargs[{name!r}] must be a mapping of options, got {options!r}")
        proxies.validate_options(name, options)


def _time_fwd_bwd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds of one plain training-style forward+backward (parameter grads included)."""
    model.train()
    model.zero_grad(set_to_none=True)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


class CandidateScorer:
    """Builds a candidate at initialization and scores it with the objective's members.

    The network is built on the CPU right after ``torch.manual_seed`` under the ``init``
    policy, then moved to the batch's device, so scores do not depend on the device's random
    generator nor on which process scores the candidate. All members are computed together by
    :func:`nas.proxies.score_many` (shared passes where they exist). A member that fails is
    ``-inf`` with its reason in ``errors``; a candidate that fails to build fails every member.

    Args:
        space: the search space.
        objective: the proxy or aggregate, or the names of the proxies to compute; every
            member is computed once per candidate.
        inputs, targets: the scoring batch (the same for every candidate).
        num_classes: classifier outputs of the built networks.
        seed: initialization seed.
        proxy_kwargs: options per member, ``{"wrcor": {"split": 2}}``.
        init: the initialization policy (:data:`InitPolicy`).
        reference_timing: also time one plain forward+backward of each network.
    """

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective | Sequence[str],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        num_classes: int,
        seed: int = 0,
        proxy_kwargs: dict[str, dict[str, Any]] | None = None,
        init: InitPolicy = "arch_hash",
        reference_timing: bool = False,
    ) -> None:
        proxies.validate_batch(inputs, targets)
        if init not in INIT_POLICIES:
            raise ValueError(f"unknown init policy {init!r}; expected one of {', '.join(INIT_POLICIES)}")
        self.space = space
        self.members: tuple[str, ...] = (
            objective.members if isinstance(objective, Objective) else tuple(proxies.expand(objective))
        )
        self.inputs = inputs
        self.targets = targets
        self.num_classes = num_classes
        self.seed = seed
        self.init = init
        self.reference_timing = reference_timing
        self.proxy_kwargs = proxy_kwargs or {}
        self._resized: dict[int, torch.Tensor] = {}
        check_proxy_kwargs(self.members, self.proxy_kwargs)

    def config(self) -> dict[str, Any]:
        """Everything that changes a score: see :func:`scoring_config`."""
        return scoring_config(self)

    def _inputs_at(self, resolution: int | None) -> torch.Tensor:
        """The scoring batch at a candidate's own input resolution (bilinear resize, cached)."""
        if resolution is None or tuple(self.inputs.shape[-2:]) == (resolution, resolution):
            return self.inputs
        if resolution not in self._resized:
            warnings.warn(
                f"the scoring batch is {self.inputs.shape[-2]}x{self.inputs.shape[-1]}; candidates at resolution "
                f"{resolution} are scored on it resized to {resolution}x{resolution} (bilinear). Search the "
                "resolutions of your data to avoid it (the MobileNet-like space: space_kwargs resolutions)",
                UserWarning,
                stacklevel=2,
            )
            self._resized[resolution] = torch.nn.functional.interpolate(
                self.inputs, size=(resolution, resolution), mode="bilinear", align_corners=False
            )
        return self._resized[resolution]

    def __call__(self, arch: Any, members: Sequence[str] | None = None) -> Scored:
        """Score ``arch`` with ``members`` (default: every member of the objective)."""
        members = tuple(self.members if members is None else members)
        key = self.space.encode(arch)
        flops, params = int(self.space.flops(arch)), int(self.space.params(arch))
        start = time.perf_counter()
        errors: dict[str, str] = {}
        fwd_bwd = math.nan
        model = None
        try:
            torch.manual_seed(init_seed(self.init, self.seed, self.space, arch))
            model = self.space.build(arch, num_classes=self.num_classes).to(self.inputs.device)
            inputs = self._inputs_at(self.space.input_resolution(arch))
            options = {m: self.proxy_kwargs[m] for m in members if m in self.proxy_kwargs}
            results = proxies.score_many(members, model, inputs, self.targets, options)
            values = [float(results[m].score) for m in members]
            seconds = [float(results[m].seconds) for m in members]
            errors = {m: _one_line(results[m].diagnostics["error"]) for m in members if proxies.failed(results[m])}
            if self.reference_timing:
                fwd_bwd = _time_fwd_bwd(model, inputs, self.targets)
        except (RuntimeError, ValueError, TypeError, MemoryError, torch.OutOfMemoryError) as err:
            values = [FAILED] * len(members)
            seconds = [0.0] * len(members)
            errors = dict.fromkeys(members, _one_line(f"{type(err).__name__}: {err}"))
        finally:
            model = None
            gc.collect()
            if self.inputs.is_cuda:
                torch.cuda.empty_cache()
        return Scored(key, tuple(values), flops, params, time.perf_counter() - start, errors, tuple(seconds), fwd_bwd)


def _one_line(text: str) -> str:
    return text.replace("\n", " ")[:500]


def scoring_config(scorer: CandidateScorer) -> dict[str, Any]:
    """What defines a score, as stored in ``config.json`` and compared on resume.

    Keys: the space and its arguments (budget included), the initialization policy and seed,
    the scoring batch (a digest of its tensors, its shape), the number of classes, the
    members' options.
    """
    inputs = scorer.inputs
    return {
        "space": scorer.space.name,
        "space_config": scorer.space.config(),
        "init": scorer.init,
        "init_seed": scorer.seed,
        "batch": batch_digest(inputs, scorer.targets),
        "batch_shape": list(inputs.shape),
        "num_classes": scorer.num_classes,
        "proxy_kwargs": {m: scorer.proxy_kwargs.get(m, {}) for m in scorer.members},
    }


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else path.open(newline="")


def _candidates_file(folder: Path) -> Path | None:
    for name in ("candidates.csv", "candidates.csv.gz"):
        if (folder / name).exists():
            return folder / name
    return None


def _parse_float(text: str) -> float:
    return float(text) if text not in ("", "nan") else math.nan


class RunFolder:
    """The results folder of one run; see the module docstring.

    Args:
        path: the folder.
        config: what defines the run: ``{"scoring": scoring_config(...), "search": {...}}``.
            ``search`` holds what a rerun must keep (proxy, algorithm, seed, ...); what only
            extends a run (``num_candidates``) does not belong in it.
        members: proxy names, the score columns.
        overwrite: delete a previous run with a different config instead of refusing.
        writer: whether this process writes files (rank 0 under DDP).
        caches: other run folders whose stored scores are reused, member by member, where their
            scoring config (the same space, batch, initialization, classes and that member's
            options) equals this run's.
        restart_hint: how a user starts over, named in the refusal (e.g. the command-line flag).
    """

    def __init__(
        self,
        path: str | Path,
        config: dict[str, Any],
        members: Sequence[str],
        *,
        overwrite: bool = False,
        writer: bool = True,
        caches: Sequence[str | Path] = (),
        restart_hint: str = "pass overwrite=True",
    ) -> None:
        self.path = Path(path)
        self.members = tuple(members)
        self.writer = writer
        self.header = ["n", "arch", *self.members, *[f"sec_{m}" for m in self.members], "macs",
                       "num_params", "seconds", "fwd_bwd", "errors"]  # fmt: skip
        config = json.loads(json.dumps(config, default=str))
        self.config = config
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            old = json.loads(cfg_file.read_text())
            if old != config:
                if not overwrite:
                    a, b = _flatten(old), _flatten(config)
                    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                    shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in diff[:6])
                    raise ValueError(
                        f"{self.path} holds a run with other settings: {shown}"
                        f"{'...' if len(diff) > 6 else ''}. Its scores would not be valid for this run: "
                        f"{restart_hint} to start over, or choose another output folder"
                    )
                if writer:
                    shutil.rmtree(self.path)
        self.stored: dict[str, Scored] = {}
        if (found := _candidates_file(self.path)) is not None:
            self.stored = self._load(found, self.members)
        self.cached: dict[str, dict[str, float]] = {}
        for cache in caches:
            self._preload(Path(cache), config.get("scoring", {}))
        if writer:
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = cfg_file.with_suffix(".json.tmp")  # readers never see a half-written file
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
            os.replace(tmp, cfg_file)
        self._file = None
        self._csv: csv.DictWriter | None = None
        self.count = len(self.stored)

    def _load(self, path: Path, members: Sequence[str]) -> dict[str, Scored]:
        out: dict[str, Scored] = {}
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != self.header:
                raise ValueError(f"{path} has columns {reader.fieldnames}, expected {self.header}")
            for row in reader:
                try:
                    scored = Scored(
                        row["arch"], tuple(float(row[m]) for m in members), int(row["macs"]), int(row["num_params"]),
                        float(row["seconds"]), json.loads(row["errors"] or "{}"),
                        tuple(float(row[f"sec_{m}"]) for m in members), _parse_float(row["fwd_bwd"]),
                    )  # fmt: skip
                except (TypeError, ValueError, KeyError):
                    continue  # a row cut short by a kill: its candidate is scored again
                out[scored.arch] = scored
        return out

    def _preload(self, folder: Path, scoring: dict[str, Any]) -> None:
        """Member scores of another run folder whose scoring settings match this run's."""
        cfg_file, found = folder / "config.json", _candidates_file(folder)
        if not cfg_file.exists() or found is None:
            raise ValueError(f"score cache {folder} must hold config.json and candidates.csv[.gz]")
        other = json.loads(cfg_file.read_text()).get("scoring", {})
        same = {k: v for k, v in scoring.items() if k != "proxy_kwargs"}
        if {k: v for k, v in other.items() if k != "proxy_kwargs"} != same:
            return
        usable = [m for m in self.members
                  if other.get("proxy_kwargs", {}).get(m) == scoring.get("proxy_kwargs", {}).get(m)]  # fmt: skip
        if not usable:
            return
        with _open_text(found) as f:
            reader = csv.DictReader(f)
            usable = [m for m in usable if m in (reader.fieldnames or [])]
            for row in reader:
                errors = json.loads(row.get("errors") or "{}")
                for m in usable:
                    if m not in errors and row[m] not in ("", None):
                        self.cached.setdefault(row["arch"], {})[m] = float(row[m])

    def lookup(self, arch: str) -> Scored | dict[str, float] | None:
        """The stored candidate, else the cached member values (possibly partial), else None."""
        if arch in self.stored:
            return self.stored[arch]
        return self.cached.get(arch)

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
        row = {"n": self.count, "arch": scored.arch, "macs": scored.flops, "num_params": scored.params,
               "seconds": f"{scored.seconds:.4f}", "fwd_bwd": repr(scored.fwd_bwd),
               "errors": json.dumps(scored.errors) if scored.errors else ""}  # fmt: skip
        row.update({m: repr(v) for m, v in zip(self.members, scored.scores, strict=True)})
        secs = scored.member_seconds or (0.0,) * len(self.members)
        row.update({f"sec_{m}": f"{v:.4f}" for m, v in zip(self.members, secs, strict=True)})
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
    from_cache: int = 0


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
    """Drive ``algorithm`` until done, scoring only what ``folder`` has neither stored nor cached.

    A candidate whose every member is in one of the folder's caches takes those values (and is
    written to the folder like a scored one, with zero seconds).
    """
    space = algorithm.space
    newly = cached = 0
    order: list[Scored] = []
    try:
        while not algorithm.done:
            archs = algorithm.ask()
            if not archs:
                break
            keys = [space.encode(a) for a in archs]
            todo = []
            for a, k in zip(archs, keys, strict=True):
                hit = folder.lookup(k)
                if isinstance(hit, dict) and len(hit) == len(folder.members):
                    folder.append(Scored(k, tuple(hit[m] for m in folder.members), int(space.flops(a)),
                                         int(space.params(a)), 0.0))  # fmt: skip
                    cached += 1
                elif not isinstance(hit, Scored):
                    todo.append(a)

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
    return SearchResult([(space.encode(a), tuple(row.tolist())) for a, row in ranked], order, newly, cached)


def plot_search(scored: Iterable[Scored], objective: Objective, path: Path, *, title: str = "",
                winner: str | None = None) -> None:
    """Best score against candidates scored, and score against FLOPs, with the winner marked.

    For an aggregate the y-axis is its fitness over all scored candidates (a running best is
    not monotone for a population-relative score, so the left panel shows each candidate's
    fitness rank among those scored so far instead).
    """
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
    value = objective.fitness(matrix)
    if objective.aggregate is None:
        best = np.maximum.accumulate(np.where(np.isfinite(value), value, -np.inf))
    else:
        label = f"{objective.name} fitness ({objective.aggregate.rule} of {', '.join(objective.members)})"
        best = np.maximum.accumulate(value)
    ok = np.isfinite(best)
    ax1.plot(np.arange(1, len(rows) + 1)[ok], best[ok])
    ax1.set_xlabel("candidates scored")
    ax1.set_ylabel(f"best {label}")
    fin = np.isfinite(value)
    ax2.scatter(flops[fin] / 1e6, value[fin], s=5, alpha=0.6, label="candidates")
    if winner is not None:
        idx = next((i for i, r in enumerate(rows) if r.arch == winner), None)
        if idx is not None and np.isfinite(value[idx]):
            ax2.scatter([flops[idx] / 1e6], [value[idx]], s=80, marker="*", color="red", label="winner", zorder=3)
            ax1.axhline(value[idx], color="red", lw=0.8, ls="--")
            ax2.legend(loc="best", fontsize=8)
    ax2.set_xlabel("MFLOPs (multiply-accumulates)")
    ax2.set_ylabel(label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
