"""Random search (pool pruning), regularized evolution and REINFORCE."""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import numpy as np
import torch

from nas.search.base import REGISTRY, SearchAlgorithm


@REGISTRY.register("random")
class RandomSearch(SearchAlgorithm):
    """Score ``num_candidates`` distinct random architectures; the ranking keeps the best.

    Args:
        batch_size: candidates handed out per ``ask`` (the unit of work shared across processes).
    """

    name = "random"

    def __init__(self, *args: Any, batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def ask(self) -> list[Any]:
        out: list[Any] = []
        pending: set[str] = set()
        while not self.exhausted and len(out) < min(self.batch_size, self._remaining()):
            arch = self._draw_new(pending)
            if arch is None:
                self.exhausted = True
                break
            pending.add(self.space.key(arch))
            out.append(arch)
        return out


@REGISTRY.register("evolution")
class RegularizedEvolution(SearchAlgorithm):
    """Regularized (aging) evolution, Real et al. 2019, with the proxy as fitness.

    A population of ``population_size`` random architectures; each child mutates the winner of
    a tournament of ``tournament_size`` members drawn from the population, joins it, and the
    oldest member leaves. A child already scored keeps its stored score and is not scored again.

    Args:
        population_size: the paper's 64.
        tournament_size: the paper's 10.
        mutation_prob: probability that a child is mutated at all (the paper's 1.0); otherwise
            it is a copy of its parent and takes the parent's score.
        children_per_step: children bred from one population state per ``ask``, so that
            several processes can score them together; 1 is classic sequential evolution.
        max_proposals: factor on ``num_candidates`` bounding the children proposed, so a
            converged population that breeds only known architectures ends the search.
    """

    name = "evolution"

    def __init__(
        self,
        *args: Any,
        population_size: int = 64,
        tournament_size: int = 10,
        mutation_prob: float = 1.0,
        children_per_step: int = 8,
        max_proposals: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if not 1 <= tournament_size <= population_size:
            raise ValueError(f"tournament_size must be in [1, population_size={population_size}], got {tournament_size}")
        if not 0.0 <= mutation_prob <= 1.0:
            raise ValueError(f"mutation_prob must be in [0, 1], got {mutation_prob}")
        if children_per_step < 1:
            raise ValueError(f"children_per_step must be >= 1, got {children_per_step}")
        if self.num_candidates <= population_size:
            warnings.warn(
                f"regularized evolution with num_candidates={self.num_candidates} <= population_size="
                f"{population_size} never mutates: it is random search. Raise num_candidates above "
                f"{population_size} (the paper: 1,000) or lower population_size",
                UserWarning,
                stacklevel=2,
            )
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.mutation_prob = mutation_prob
        self.children_per_step = children_per_step
        self.max_proposals = max_proposals * self.num_candidates
        self.population: deque[tuple[Any, np.ndarray]] = deque()
        self.proposals = 0

    def ask(self) -> list[Any]:
        if self.done:
            return []
        pending: dict[str, Any] = {}
        if len(self.population) < self.population_size:
            while len(self.population) + len(pending) < self.population_size and len(pending) < self._remaining():
                arch = self._draw_new(set(pending))
                if arch is None:
                    self.exhausted = True
                    break
                pending[self.space.key(arch)] = arch
            return list(pending.values())
        children: list[Any] = []
        while len(pending) < min(self.children_per_step, self._remaining()) and not self.exhausted:
            if self.proposals >= self.max_proposals:
                self.exhausted = True
                break
            self.proposals += 1
            child = self._breed()
            if child is None:
                continue
            key = self.space.key(child)
            if key in self.scores:  # known: joins the population with its stored score
                self._join(child, self.scores[key])
            elif key not in pending:
                pending[key] = child
                children.append(child)
        return children

    def _breed(self) -> Any | None:
        members = list(self.population)
        picks = self.rng.choice(len(members), size=self.tournament_size, replace=False)
        contest = np.stack([members[i][1] for i in picks])
        parent = members[int(picks[self.objective.best(contest)])][0]
        if self.rng.random() >= self.mutation_prob:
            return parent
        return self.space.mutate_within(parent, self.rng)

    def _join(self, arch: Any, row: np.ndarray) -> None:
        self.population.append((arch, row))
        if len(self.population) > self.population_size:
            self.population.popleft()

    def _after_tell(self, archs: list[Any], scores: np.ndarray) -> None:
        for arch, row in zip(archs, scores, strict=True):
            self._join(arch, row)


@REGISTRY.register("reinforce")
class Reinforce(SearchAlgorithm):
    """REINFORCE over a per-decision categorical policy (Williams 1992; NAS-Bench-201's baseline).

    Each decision of ``space.decisions`` has its own logits; after each scored architecture one
    Adam step (``lr``) follows ``advantage * grad log p(arch)``, where the reward is
    :meth:`Objective.reward` (the z-score of the candidate's proxy value, or of its aggregate
    fitness, among every candidate scored so far) and the advantage subtracts a moving-average baseline (``baseline_momentum``). Failed candidates
    (non-finite scores) teach nothing. An architecture drawn again reuses its stored score.

    Args:
        lr: Adam learning rate (the paper's 1e-3).
        baseline_momentum: the paper's 0.9.
        batch_size: architectures drawn per ``ask`` before their rewards update the policy.
    """

    name = "reinforce"

    def __init__(
        self,
        *args: Any,
        lr: float = 1e-3,
        baseline_momentum: float = 0.9,
        batch_size: int = 1,
        max_proposals: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        try:
            sizes = self.space.decision_sizes()
        except NotImplementedError as err:
            raise ValueError(f"REINFORCE needs categorical decisions: {err}") from None
        if not 0 <= baseline_momentum < 1:
            raise ValueError(f"baseline_momentum must be in [0, 1), got {baseline_momentum}")
        self.logits = [torch.zeros(n, dtype=torch.float64, requires_grad=True) for n in sizes]
        self.optimizer = torch.optim.Adam(self.logits, lr=lr)
        self.momentum = baseline_momentum
        self.baseline: float | None = None
        self.batch_size = batch_size
        self.max_proposals = max_proposals * self.num_candidates
        self.proposals = 0

    def _sample(self) -> tuple[Any, list[int]]:
        choices = []
        for logit in self.logits:
            p = torch.softmax(logit.detach(), 0).numpy()
            choices.append(int(self.rng.choice(len(p), p=p / p.sum())))
        return self.space.from_decisions(choices), choices

    def ask(self) -> list[Any]:
        pending: dict[str, Any] = {}
        while not self.done and len(pending) < min(self.batch_size, self._remaining()):
            if self.proposals >= self.max_proposals:
                self.exhausted = True
                break
            self.proposals += 1
            try:
                drawn, _ = self._sample()
            except ValueError:  # decisions that form no valid architecture (e.g. a NAS-Bench-101 cell
                continue  # whose input does not reach its output): rejected, as are unfixable budgets
            arch = self.space.within_budget(drawn, self.rng)  # the policy learns from what is scored
            if arch is None:
                continue
            key = self.space.key(arch)
            if key in self.scores:
                self._update(arch, self.scores[key])
            elif key not in pending:
                pending[key] = arch
        return list(pending.values())

    def _update(self, arch: Any, row: np.ndarray) -> None:
        reward = self.objective.reward(row, np.stack([r for _, r in self.history]))
        if reward is None:
            return
        self.baseline = reward if self.baseline is None else self.momentum * self.baseline + (1 - self.momentum) * reward
        advantage = reward - self.baseline
        choices = self.space.decisions(arch)
        log_prob = sum(torch.log_softmax(l, 0)[c] for l, c in zip(self.logits, choices, strict=True))
        self.optimizer.zero_grad()
        (-advantage * log_prob).backward()
        self.optimizer.step()

    def _after_tell(self, archs: list[Any], scores: np.ndarray) -> None:
        for arch, row in zip(archs, scores, strict=True):
            self._update(arch, row)
