"""Zero-shot architecture search at initialization, as a Lightning callback."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

import nas
from nas import search as nas_search
from nas.progress import progress_bar
from nas.search.runner import (
    CandidateScorer,
    RunFolder,
    Scored,
    check_proxy_kwargs,
    plot_search,
    run_search,
    serial_map,
)
from nas.winner import Winner


class ZeroShotSearch(Callback):
    """Score a supernet-free candidate pool with a training-free proxy before any optimizer step.

    At ``setup("fit")`` the callback draws one scoring batch from the trainer's datamodule (the
    same batch for every candidate and every process), runs the search algorithm, writes every
    score to ``<output_dir>/candidates.csv`` as it is computed, writes ``winner.yaml`` and a plot,
    and hands the winner to the LightningModule through ``set_network(model_name, model_kwargs)``,
    so that ``fit`` then trains it. Under DDP every rank scores its share of each batch of
    candidates, the scores are gathered and every rank agrees on the same winner; only rank 0
    writes files. Rerunning with the same ``output_dir`` resumes (see :mod:`nas.search.runner`).

    Args:
        space: registered search space (``nas.spaces.available()``).
        proxy: registered proxy or aggregate (``"wrcor"``, ``"sjw"``, ...; ``nas.proxies.available()``).
        algorithm: ``"random"`` (pool pruning), ``"evolution"`` or ``"reinforce"``.
        num_candidates: distinct architectures to score.
        top_k: size of the ranking kept and reported.
        seed: seed of the search and of the candidates' initialization.
        batch_size: samples in the scoring batch.
        max_flops: multiply-accumulates budget per candidate (``None``: unlimited); every
            algorithm samples and mutates within it (``space.with_budget``).
        max_params: parameter budget per candidate (``None``: unlimited).
        num_classes: classifier outputs of the candidates; default the datamodule's ``num_classes``.
        output_dir: the run's folder.
        overwrite: start over when ``output_dir`` holds a run with other settings (a run with
            the same settings resumes; a larger ``num_candidates`` extends it).
        algorithm_kwargs: extra arguments of the algorithm (e.g. ``{"population_size": 64}``).
        proxy_kwargs: options per proxy (e.g. ``{"wrcor": {"split": 2}}``).
        space_kwargs: arguments of the space's constructor, when not the registered default.
        install_winner: call ``pl_module.set_network`` with the winner.
        progress: show a progress bar (rank 0).

    Raises:
        ValueError: an unknown space, proxy or algorithm, or a bad number, before any work.

    Example::

        trainer = Trainer(max_epochs=0, callbacks=[ZeroShotSearch("nb201", "wrcor", num_candidates=100)])
        trainer.fit(module, datamodule=CIFARDataModule())
    """

    def __init__(
        self,
        space: str = "nb201",
        proxy: str = "wrcor",
        algorithm: Literal["random", "evolution", "reinforce"] = "random",
        num_candidates: int = 1000,
        top_k: int = 10,
        seed: int = 0,
        batch_size: int = 64,
        max_flops: float | None = None,
        max_params: float | None = None,
        num_classes: int | None = None,
        output_dir: str = "runs/search/default",
        overwrite: bool = False,
        algorithm_kwargs: dict[str, Any] | None = None,
        proxy_kwargs: dict[str, dict[str, Any]] | None = None,
        space_kwargs: dict[str, Any] | None = None,
        install_winner: bool = True,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if space not in nas.spaces.available():
            raise ValueError(f"unknown search space {space!r}; available: {', '.join(nas.spaces.available())}")
        self.objective = nas_search.Objective(proxy)  # raises for unknown proxies / aggregates
        check_proxy_kwargs(self.objective, dict(proxy_kwargs or {}))
        if algorithm not in nas_search.available():
            raise ValueError(f"unknown search algorithm {algorithm!r}; available: {', '.join(nas_search.available())}")
        for name, value in (("num_candidates", num_candidates), ("top_k", top_k)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2 (samples are correlated), got {batch_size!r}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, value in (("max_flops", max_flops), ("max_params", max_params)):
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        self.max_flops, self.max_params = max_flops, max_params
        self.space_name = space
        self.proxy = proxy
        self.algorithm = algorithm
        self.num_candidates = num_candidates
        self.top_k = top_k
        self.seed = seed
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.algorithm_kwargs = dict(algorithm_kwargs or {})
        self.proxy_kwargs = dict(proxy_kwargs or {})
        self.space_kwargs = dict(space_kwargs or {})
        self.install_winner = install_winner
        self.progress = progress
        self.winner: Winner | None = None
        self.ranking: list[tuple[str, tuple[float, ...]]] = []
        self.seconds = 0.0

    # ----------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The search settings a rerun must keep (``num_candidates`` only extends a run)."""
        return {
            "space": self.space_name, "space_kwargs": self.space_kwargs, "proxy": self.proxy,
            "members": list(self.objective.members), "algorithm": self.algorithm,
            "algorithm_kwargs": self.algorithm_kwargs, "seed": self.seed, "batch_size": self.batch_size,
            "max_flops": self.max_flops, "max_params": self.max_params, "proxy_kwargs": self.proxy_kwargs,
        }  # fmt: skip

    def _space(self) -> nas.spaces.SearchSpace:
        space = nas.spaces.create(self.space_name, **self.space_kwargs)
        if self.max_flops is None and self.max_params is None:
            return space
        return space.with_budget(self.max_flops, self.max_params)

    # ----------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.install_winner and not callable(getattr(pl_module, "set_network", None)):
            raise TypeError(
                f"{type(pl_module).__name__} has no set_network(model_name, model_kwargs); the search "
                "cannot hand it the winner (pass install_winner=False to only search)"
            )
        if self.winner is None:
            self.search(trainer)
        if self.install_winner and self.winner is not None:
            pl_module.set_network(self.winner.model, dict(self.winner.model_kwargs))

    def search(self, trainer: pl.Trainer) -> Winner:
        """Run (or resume) the search; returns the winner, the same on every rank."""
        start = time.perf_counter()
        space = self._space()
        inputs, targets = self._scoring_batch(trainer)
        num_classes = self.num_classes or int(getattr(trainer.datamodule, "num_classes", 0) or 0)
        if num_classes < 1:
            raise ValueError("num_classes is unknown: set it on the callback or give the datamodule a num_classes attribute")
        device = trainer.strategy.root_device
        inputs, targets = inputs.to(device), targets.to(device)
        scorer = CandidateScorer(
            space, self.objective, inputs, targets, num_classes=num_classes, seed=self.seed, proxy_kwargs=self.proxy_kwargs
        )
        algo = nas_search.create(
            self.algorithm, space, self.objective, self.num_candidates, seed=self.seed, **self.algorithm_kwargs
        )
        rank, world = trainer.global_rank, trainer.world_size
        writer = rank == 0
        config = {"scoring": scorer.config(), "search": self.config()}

        def open_folder() -> RunFolder:
            return RunFolder(self.output_dir, config, self.objective.members, overwrite=self.overwrite, writer=writer,
                             restart_hint="rerun with --search.overwrite true")  # fmt: skip

        # rank 0 checks, clears (overwrite) and writes the folder before any other rank reads it
        folder = open_folder() if writer else None
        if world > 1:
            trainer.strategy.barrier("zero_shot_search_folder")
        if folder is None:
            folder = open_folder()
        resumed = folder.count
        map_fn = serial_map(scorer) if world == 1 else _distributed_map(scorer, rank, world)
        tracked = None if self.objective.aggregate is not None else self.objective.members[0]
        with _Progress(self.progress and writer, self.num_candidates, resumed, tracked) as bar:
            result = run_search(algo, folder, map_fn, top_k=self.top_k, on_progress=bar.update)
        self.ranking = result.ranking
        arch_str, best_scores = result.ranking[0]
        arch = space.decode(arch_str)
        model_name, model_kwargs = space.timm_spec(arch)
        self.winner = Winner(
            space=self.space_name, arch=arch_str, model=model_name, model_kwargs=model_kwargs,
            score=_winner_score(self.objective, result),
            proxy=self.proxy, flops=int(space.flops(arch)), params=int(space.params(arch)),
            resolution=int(space.input_resolution(arch) or inputs.shape[-1]),
            seed=self.seed, config={**self.config(), "num_classes": num_classes, "scores": dict(zip(self.objective.members, map(float, best_scores), strict=True))},
        )  # fmt: skip
        self.seconds = time.perf_counter() - start
        if writer:
            self.winner.to_yaml(self.output_dir / "winner.yaml")
            title = (f"{self.space_name}: {self.proxy}, {self.algorithm} search, "
                     f"{len(result.scored):,} candidates (winner marked)")  # fmt: skip
            plot_search(result.scored, self.objective, self.output_dir / "search.png", title=title, winner=arch_str)
            self._report(space, result, resumed)
        return self.winner

    def _report(self, space: Any, result: Any, resumed: int) -> None:
        w = self.winner
        assert w is not None
        lines = [
            f"zero-shot search: {len(result.scored)} candidates ({result.newly_scored} scored now, "
            f"{resumed} resumed) in {self.seconds:.1f} s",
            f"winner: {w.arch}  {_format_scores(w.config['scores'])}  MACs={w.flops:,}  params={w.params:,}",
            f"wrote {self.output_dir / 'candidates.csv'}, {self.output_dir / 'winner.yaml'}, {self.output_dir / 'search.png'}",
        ]
        row = space.table_row(space.decode(w.arch))
        if row is not None:
            table = space.benchmark()
            dataset = table.datasets[0]
            truth = table.accuracy[dataset]
            acc = float(truth[row])
            rank = int((truth > acc).sum()) + 1
            lines.append(
                f"{space.name} ground truth: {dataset} {table.measure} {acc:.2f}% "
                f"(rank {rank:,} of the {len(table):,} cells of the table; best {truth.max():.2f}%)"
            )
        rank_zero_info("\n".join(lines))

    def _scoring_batch(self, trainer: pl.Trainer) -> tuple[torch.Tensor, torch.Tensor]:
        dm = trainer.datamodule
        if dm is None:
            raise ValueError("ZeroShotSearch needs a datamodule to draw the scoring batch from; pass datamodule= to fit")
        xs, ys, have = [], [], 0
        if trainer.global_rank == 0:
            # The batch is a function of the search seed alone (not of whatever consumed the global
            # generator before), and the global generator is left as it was.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                batches = list(_take(dm.train_dataloader(), self.batch_size))
            for batch in batches:
                x, y = batch[0], batch[1]
                xs.append(x.detach().cpu())
                ys.append(y.detach().cpu().reshape(-1).long())
                have += len(x)
                if have >= self.batch_size:
                    break
            if have < self.batch_size:
                raise ValueError(
                    f"the datamodule's train loader yields {have} samples; the scoring batch needs {self.batch_size} "
                    "(a loader that drops its last incomplete batch yields nothing when its batch size exceeds the data)"
                )
        payload = (torch.cat(xs)[: self.batch_size], torch.cat(ys)[: self.batch_size]) if xs else None
        if trainer.world_size > 1:
            payload = trainer.strategy.broadcast(payload, src=0)
        assert payload is not None
        return payload

    # ----------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "winner": None if self.winner is None else vars(self.winner) | {},
            "ranking": [[a, list(s)] for a, s in self.ranking],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("config") != self.config():
            raise ValueError("the checkpoint's search used another configuration than this ZeroShotSearch callback")
        self.ranking = [(a, tuple(s)) for a, s in state_dict.get("ranking", [])]
        if state_dict.get("winner"):
            self.winner = Winner(**state_dict["winner"])


def _take(loader: Any, samples: int):
    """Batches of ``loader`` until ``samples`` samples have been yielded."""
    have = 0
    for batch in loader:
        yield batch
        have += len(batch[0])
        if have >= samples:
            return


def _winner_score(objective: nas_search.Objective, result: Any) -> float:
    """The proxy score of the winner; for an aggregate, its value among every scored candidate."""
    best = result.ranking[0][1]
    if objective.aggregate is None:
        return float(best[0])
    import numpy as np

    matrix = np.array([s.scores for s in result.scored], dtype=np.float64)
    idx = [s.arch for s in result.scored].index(result.ranking[0][0])
    return float(objective.aggregate.scores(matrix)[idx])


def _format_scores(scores: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.2f}" for k, v in scores.items())


def _distributed_map(scorer: CandidateScorer, rank: int, world: int):
    """Each rank scores candidates ``rank, rank + world, ...``; results are all-gathered."""

    def run(archs: list[Any], on_result) -> list[Scored]:
        mine = []
        for arch in archs[rank::world]:
            scored = scorer(arch)
            on_result(scored)
            mine.append(scored)
        gathered: list[list[Scored] | None] = [None] * world
        dist.all_gather_object(gathered, mine)
        out: list[Scored] = []
        for i in range(len(archs)):
            part = gathered[i % world]
            assert part is not None
            out.append(part[i // world])
        return out

    return run


class _Progress:
    """A rich progress bar with candidates/s, ETA and the best score (no-op when disabled).

    ``tracked`` names the proxy whose best value is shown; an aggregate has no single score, so
    none is shown for it (``None``).
    """

    def __init__(self, enabled: bool, total: int, done: int, tracked: str | None = None) -> None:
        self.enabled = enabled and os.environ.get("NAS_NO_PROGRESS") != "1"
        self.total, self.done, self.tracked = total, done, tracked
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._bar = progress_bar(label="search", rate=True, best=True)
            self._bar.start()
            self._task = self._bar.add_task("search", total=self.total, completed=self.done, rate="-", best="-")
            self._start, self._first = time.perf_counter(), self.done
            self._best = float("-inf")
        return self

    def update(self, done: int, total: int, scored: Scored | None) -> None:
        if self._bar is None:
            return
        if scored is not None and scored.scores and scored.scores[0] > self._best:
            self._best = scored.scores[0]
        rate = (done - self._first) / max(time.perf_counter() - self._start, 1e-9)
        best = f"{self.tracked} {self._best:.2f}" if self.tracked else "ranked at the end"
        self._bar.update(self._task, completed=done, rate=f"{rate:.2f}", best=best)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
