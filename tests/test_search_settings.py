"""A search never returns results computed under other settings, and budgets bound what it samples."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest

import nas
import search
from nas.search import Objective, create

SMALL = ["--search.num_candidates", "4", "--search.batch_size", "8", "--trainer.accelerator", "cpu"]


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "candidates.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        ("--search.num_classes", "100", "scoring.num_classes (10 -> 100)"),
        ("--data.init_args.augment", "true", "scoring.batch ("),
        ("--search.seed", "1", "scoring.init_seed (0 -> 1)"),
        ("--search.proxy_kwargs", "{wrcor: {padding: circular}}", "scoring.proxy_kwargs.wrcor.padding"),
    ],
)
def test_a_changed_setting_is_refused_naming_it_and_the_flag(tmp_path: Path, flag: str, value: str, key: str) -> None:
    out = ["--search.output_dir", str(tmp_path)]
    search.main([*SMALL, *out])
    before = _rows(tmp_path)
    with pytest.raises(ValueError) as info:
        search.main([*SMALL, *out, flag, value])
    message = str(info.value)
    assert key in message and "--search.overwrite true" in message, message
    assert _rows(tmp_path) == before, "nothing stored is touched or reused"


def test_a_larger_num_candidates_extends_a_finished_run(tmp_path: Path) -> None:
    out = ["--search.output_dir", str(tmp_path)]
    search.main([*SMALL, *out])
    first = {r["arch"]: r["wrcor"] for r in _rows(tmp_path)}
    search.main([*SMALL[2:], "--search.num_candidates", "6", *out])
    rows = {r["arch"]: r["wrcor"] for r in _rows(tmp_path)}
    assert len(rows) == 6 and all(rows[a] == s for a, s in first.items()), "the first four kept, two added"


@pytest.mark.parametrize("max_flops", [100e6, 300e6])
def test_small_mobilenet_budgets_are_searched_within(max_flops: float) -> None:
    space = nas.spaces.get("mbv2").with_budget(max_flops=max_flops)
    for name in nas.search.available():
        algo = create(name, space, Objective("params"), 12, seed=0)
        while not algo.done:
            archs = algo.ask()
            if not archs:
                break
            algo.tell(archs, np.array([[space.params(a)] for a in archs], dtype=np.float64))
        assert len(algo.history) == 12, name
        assert all(space.flops(a) <= max_flops for a, _ in algo.history), name


def test_an_unreachable_budget_names_the_smallest_network() -> None:
    space = nas.spaces.get("mbv2")
    with pytest.raises(ValueError, match=r"the smallest network \(r192_.*\) has [0-9,]+ MACs"):
        space.with_budget(max_flops=1e6)


def test_evolution_shorter_than_its_population_warns() -> None:
    space = nas.spaces.get("nb201")
    with pytest.warns(UserWarning, match=r"num_candidates=20 <= population_size=64 never mutates: it is random search"):
        create("evolution", space, Objective("params"), 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create("evolution", space, Objective("params"), 100)


def test_the_mobilenet_space_searches_the_resolutions_asked_for() -> None:
    import torch

    from nas.search.runner import CandidateScorer

    small = nas.spaces.create("mbv2", resolutions=(32,), num_classes=10).with_budget(max_flops=20e6)
    rng = np.random.default_rng(0)
    archs = [small.sample_within(rng) for _ in range(5)]
    assert {a.resolution for a in archs} == {32} and all(small.flops(a) <= 20e6 for a in archs)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the batch is at the candidates' resolution: nothing to say
        scored = CandidateScorer(small, Objective("params"), x, y, num_classes=10)(archs[0])
    assert not scored.errors
    wide = nas.spaces.create("mbv2", resolutions=(64, 96), num_classes=10)
    arch = wide.sample_within(np.random.default_rng(1))
    with pytest.warns(UserWarning, match=rf"the scoring batch is 32x32; candidates at resolution {arch.resolution}"):
        CandidateScorer(wide, Objective("params"), x, y, num_classes=10)(arch)
    with pytest.raises(ValueError, match=r"resolutions must be positive multiples of 32"):
        nas.spaces.create("mbv2", resolutions=(40,))
