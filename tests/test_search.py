from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import nas
from nas.search import Objective, available, create
from nas.search.runner import CandidateScorer, RunFolder, run_search, serial_map

space = nas.spaces.get("nb201")


def drive(algo, score=lambda a: [space.params(a)]):
    while not algo.done:
        archs = algo.ask()
        if not archs:
            break
        algo.tell(archs, np.array([score(a) for a in archs], dtype=np.float64))
    return algo


@pytest.mark.parametrize("name", ["random", "evolution", "reinforce"])
def test_every_algorithm_is_reproducible_and_never_rescores(name: str) -> None:
    runs = [drive(create(name, space, Objective("params"), 120, seed=3)) for _ in range(2)]
    keys = [[space.encode(a) for a, _ in r.history] for r in runs]
    assert keys[0] == keys[1], "same seed, same run"
    assert len(keys[0]) == 120 and len(set(keys[0])) == 120, "duplicates are scored once"
    other = drive(create(name, space, Objective("params"), 120, seed=4))
    assert [space.encode(a) for a, _ in other.history] != keys[0]


@pytest.mark.parametrize("name", ["evolution", "reinforce"])
def test_guided_search_beats_random_on_a_known_objective(name: str) -> None:
    def best(algo):
        return max(row[0] for _, row in drive(algo).history)

    extra = {"lr": 0.05, "max_proposals": 2} if name == "reinforce" else {}
    guided = np.mean([best(create(name, space, Objective("params"), 100, seed=s, **extra)) for s in range(3)])
    rand = np.mean([best(create("random", space, Objective("params"), 100, seed=s)) for s in range(3)])
    assert guided >= rand, (guided, rand)


def test_budgets_apply_to_every_algorithm() -> None:
    bounded = space.with_budget(max_flops=60e6)
    for name in available():
        algo = drive(create(name, bounded, Objective("params"), 40, seed=0))
        assert all(space.flops(a) <= 60e6 for a, _ in algo.history), name
    smallest = space.smallest()
    with pytest.raises(ValueError, match=r"no architecture of space 'nb201' fits max_flops=1, max_params=None: its smallest "
                       rf"network \({re.escape(space.encode(smallest))}\) has {space.flops(smallest):,} MACs"):
        space.with_budget(max_flops=1)
    with pytest.raises(ValueError, match="max_params must be a positive number or None, got -5"):
        space.with_budget(max_params=-5)
    # just above the smallest network is reachable: said unreachable only below it
    assert space.with_budget(max_params=space.params(smallest)).fits(smallest)


def test_bad_names_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="unknown search algorithm 'annealing'; available: evolution, random, reinforce"):
        create("annealing", space, Objective("wrcor"), 10)
    with pytest.raises(ValueError, match="unknown proxy 'wrcr'; available: .*sjw"):
        Objective("wrcr")
    with pytest.raises(ValueError, match="tournament_size"):
        create("evolution", space, Objective("wrcor"), 10, population_size=8, tournament_size=9)


@pytest.mark.parametrize(
    ("proxy", "options", "match"),
    [
        ("wrcor", {"synflow": {}}, r"proxy_kwargs names \['synflow'\], which are not among the members"),
        ("wrcor", {"wrcor": {"paddin": "circular"}}, r"proxy 'wrcor' has no option\(s\) \['paddin'\]"),
        ("sjw", {"wrcor": {"padding": "reflect"}}, "padding='reflect' is not allowed; expected one of 'model', 'circular'"),
        ("wrcor", {"wrcor": {"weighting": "cubic"}}, "weighting='cubic' is not allowed"),
        ("wrcor", {"wrcor": "circular"}, r"proxy_kwargs\['wrcor'\] must be a mapping of options"),
    ],
)
def test_bad_proxy_options_are_refused_before_any_work(tmp_path, proxy, options, match) -> None:
    from callbacks import ZeroShotSearch

    with pytest.raises(ValueError, match=match):
        ZeroShotSearch(proxy=proxy, proxy_kwargs=options, output_dir=str(tmp_path))
    assert not any(tmp_path.iterdir()), "nothing written"


def test_evolution_ages_its_population() -> None:
    algo = drive(create("evolution", space, Objective("params"), 100, seed=0, population_size=16, tournament_size=4))
    assert len(algo.population) == 16
    assert algo.proposals >= 100 - 16


def test_random_search_stops_when_the_budgeted_space_runs_dry() -> None:
    # only the 3**6 = 729 cells without a conv fit this budget
    bounded = space.with_budget(max_params=73_306)
    algo = drive(create("random", bounded, Objective("params"), 800, seed=0, max_tries=3_000))
    assert algo.exhausted and algo.done
    assert 600 <= len(algo.history) <= 729
    assert all(space.params(a) <= 73_306 for a, _ in algo.history)


def _run(folder: Path, n: int = 8, **kw):
    x, y = nas.data.cifar10_batch(8)
    obj = Objective("wrcor")
    scorer = CandidateScorer(space, obj, x, y, num_classes=10, seed=0)
    algo = create("random", space, obj, n, seed=1, batch_size=4)
    rf = RunFolder(folder, {"scoring": scorer.config(), "search": kw}, obj.members)
    return run_search(algo, rf, serial_map(scorer), top_k=3)


def test_run_folder_resumes_without_rescoring(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", n=6)
    assert first.newly_scored == 6
    again = _run(tmp_path / "a", n=6)
    assert again.newly_scored == 0 and again.ranking == first.ranking
    with pytest.raises(ValueError, match=r"holds a run with other settings: search.proxy \(None -> 'other'\)"):
        _run(tmp_path / "a", n=6, proxy="other")
    grown = _run(tmp_path / "a", n=9)
    assert grown.newly_scored == 3, "a larger num_candidates extends the run"


def test_failed_candidates_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    class Flaky(CandidateScorer):
        def __call__(self, arch):
            if "avg_pool_3x3~0|+" in space.encode(arch):
                self.space = _Broken(space)
            try:
                return super().__call__(arch)
            finally:
                self.space = space

    class _Broken:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def build(self, arch, num_classes):
            raise RuntimeError("CUDA out of memory (simulated)")

    x, y = nas.data.cifar10_batch(8)
    obj = Objective("wrcor")
    algo = create("random", space, obj, 12, seed=5)
    result = run_search(algo, RunFolder(tmp_path, {}, obj.members), serial_map(Flaky(space, obj, x, y, num_classes=10)))
    rows = list(csv.DictReader(open(tmp_path / "candidates.csv")))
    failed = [r for r in rows if r["errors"]]
    assert len(rows) == 12 and failed, "some candidates start with avg_pool on edge 0"
    assert all("out of memory" in r["errors"] and r["wrcor"] == "-inf" for r in failed)
    assert result.ranking[0][1][0] > float("-inf")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, nas
    from nas.search import Objective, create
    from nas.search.runner import CandidateScorer, RunFolder, run_search, serial_map
    space = nas.spaces.get("nb201")
    x, y = nas.data.cifar10_batch(8)
    obj = Objective("wrcor")
    algo = create("evolution", space, obj, 14, seed=2, population_size=6, tournament_size=3, children_per_step=2)
    result = run_search(algo, RunFolder(sys.argv[1], {"test": 1}, obj.members),
                        serial_map(CandidateScorer(space, obj, x, y, num_classes=10, seed=0)))
    print("WINNER", result.ranking[0][0])
    """
)


def test_a_search_killed_with_sigkill_resumes_to_the_same_winner(tmp_path: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(KILL_SCRIPT)
    root = Path(__file__).resolve().parents[1]  # the checkout under test, whatever is installed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env, stdout=subprocess.PIPE)
    csv_path = killed / "candidates.csv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) >= 5:  # header + 4 rows
            break
        assert proc.poll() is None, "the search ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = len(csv_path.read_text().splitlines()) - 1
    assert 4 <= partial < 14
    resumed = subprocess.run([sys.executable, str(script), str(killed)], env=env, capture_output=True, text=True, check=True)
    clean = subprocess.run([sys.executable, str(script), str(tmp_path / "clean")], env=env, capture_output=True, text=True, check=True)
    winner = [line for line in resumed.stdout.splitlines() if line.startswith("WINNER")]
    assert winner and winner == [line for line in clean.stdout.splitlines() if line.startswith("WINNER")]
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 14 and len({r["arch"] for r in rows}) == 14, "every candidate exactly once"
    clean_rows = {r["arch"]: r["wrcor"] for r in csv.DictReader(open(tmp_path / "clean" / "candidates.csv"))}
    assert {r["arch"]: r["wrcor"] for r in rows} == clean_rows, "same candidates, identical scores"
