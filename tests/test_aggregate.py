from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from nas import proxies
from nas.proxies import aggregate as vote_mod
from nas.proxies.aggregate import Aggregate, rank_average, register_aggregate

INF = float("-inf")


def brute_force_wins(v: Aggregate, m: np.ndarray) -> np.ndarray:
    return np.array([sum(v.beats(m[i], m[j]) for j in range(len(m)) if j != i) for i in range(len(m))])


@pytest.fixture
def scratch_registry(monkeypatch):
    """Votes registered in a test disappear afterwards."""
    monkeypatch.setattr(proxies.REGISTRY, "_entries", dict(proxies.REGISTRY._entries))


def test_default_votes() -> None:
    assert {"sjw", "spw"} <= set(proxies.available("aggregate"))
    assert proxies.get("sjw").members == ("synflow", "jacob_cov", "wrcor")
    assert proxies.get("spw").members == ("synflow", "l2_norm", "wrcor")


def test_beats_is_a_strict_majority() -> None:
    v = proxies.get("sjw")
    assert v.beats([3, 1, 5], [2, 0, 9]), "two of three members prefer A"
    assert not v.beats([2, 0, 9], [3, 1, 5])
    assert not v.beats([1, 1, 1], [1, 1, 0]), "equal scores are no preference: only one member prefers A"
    assert not v.beats([1, 1, 0], [1, 1, 1])
    assert v.beats([0, 0, INF], [INF, INF, 0]), "-inf loses to any finite score"
    assert not v.beats([INF, INF, 1], [INF, INF, 0]), "-inf against -inf is no preference"


def test_even_vote_needs_more_than_half(scratch_registry) -> None:
    v = register_aggregate("four", ("synflow", "jacob_cov", "wrcor", "l2_norm"))
    assert v.majority == 3
    assert not v.beats([1, 1, 0, 0], [0, 0, 1, 1]) and not v.beats([0, 0, 1, 1], [1, 1, 0, 0])
    assert v.beats([1, 1, 1, 0], [0, 0, 0, 1])


def test_wins_match_pairwise_comparisons() -> None:
    rng = np.random.default_rng(0)
    m = rng.integers(0, 4, size=(40, 3)).astype(float)  # many ties
    m[rng.random(m.shape) < 0.1] = INF
    v = proxies.get("spw")
    np.testing.assert_array_equal(v.wins(m), brute_force_wins(v, m))
    # a hand-made matrix: row 2 dominates, row 0 is dominated, row 1 beats row 0 only
    hand = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0], [2.0, 2.0, 2.0]])
    assert v.wins(hand).tolist() == [0, 1, 2]


def test_wins_chunking_and_speed(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    m = rng.normal(size=(300, 3))
    v = proxies.get("sjw")
    whole = v.wins(m)
    monkeypatch.setattr(vote_mod, "CHUNK_ELEMENTS", 1000)  # forces many small row chunks
    np.testing.assert_array_equal(v.wins(m), whole)
    monkeypatch.undo()
    big = rng.normal(size=(5000, 3))
    start = time.perf_counter()
    wins = v.wins(big)
    assert time.perf_counter() - start < 10.0, "n=5000 must be quick"
    assert wins.shape == (5000,) and wins.max() < 5000


def test_order_breaks_ties_by_rank_average() -> None:
    v = proxies.get("sjw")
    # a Condorcet cycle: each row beats exactly one other, so wins tie at 1
    cycle = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0], [0.0, 0.0, 0.0]])
    assert v.wins(cycle).tolist() == [2, 2, 2, 0]
    assert v.order(cycle).tolist() == [0, 1, 2, 3], "equal wins and equal rank averages keep index order"
    tied = np.array([[0.0, 5.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.1]])
    # wins: row 2 beats 0 and 1; row 1 beats 0; row 0 beats none
    assert v.order(tied).tolist() == [2, 1, 0]
    # equal wins, different rank averages
    m = np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert v.wins(m).tolist() == [0, 0, 0]
    assert v.order(m).tolist() == [0, 1, 2]
    assert v.order(m[::-1]).tolist() == [2, 1, 0]


def test_rank_average() -> None:
    m = np.array([[1.0, INF], [2.0, 0.0], [2.0, 5.0]])
    np.testing.assert_allclose(rank_average(m), [(1 + 1) / 2, (2.5 + 2) / 2, (2.5 + 3) / 2])
    with pytest.raises(ValueError, match="NaN"):
        rank_average([[1.0, float("nan")]])


def test_bad_matrices() -> None:
    v = proxies.get("sjw")
    with pytest.raises(ValueError, match=r"shape \(n_archs, 3\)"):
        v.wins(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        v.wins([[0.0, 1.0, float("nan")]])
    with pytest.raises(ValueError, match="NaN"):
        v.beats([0, 0, float("nan")], [0, 0, 0])


def test_registry_errors(scratch_registry) -> None:
    with pytest.raises(ValueError, match="at least two members"):
        register_aggregate("solo", ("wrcor",))
    with pytest.raises(ValueError, match=r"unknown member\(s\) \['nope'\]; registered proxies: .*synflow"):
        register_aggregate("bad", ("wrcor", "nope"))
    with pytest.raises(ValueError, match="repeats a member"):
        register_aggregate("dup", ("wrcor", "wrcor"))
    with pytest.raises(ValueError, match="already registered"):
        register_aggregate("sjw", ("wrcor", "synflow"))
    with pytest.raises(ValueError, match="proxy 'wrcor' is already registered"):
        register_aggregate("wrcor", ("synflow", "naswot"))
    with pytest.raises(ValueError, match=r"\['sjw'\] are aggregates; the members of an aggregate are single proxies"):
        register_aggregate("nested", ("sjw", "naswot"))
    with pytest.raises(ValueError, match="unknown rule 'median'"):
        register_aggregate("med", ("wrcor", "naswot"), "median")
    with pytest.raises(ValueError, match="unknown proxy 'xyz'; available: .*sjw"):
        proxies.get("xyz")
    register_aggregate("pair", ("wrcor", "naswot"))
    assert "pair" in proxies.available("aggregate")


def test_vote_agrees_with_member_when_unanimous() -> None:
    v = proxies.get("sjw")
    base = np.arange(10.0)
    m = np.stack([base, 2 * base, base - 3], axis=1)
    assert v.order(m).tolist() == list(range(9, -1, -1))
    assert all(v.beats(m[i], m[j]) == (i > j) for i, j in itertools.permutations(range(10), 2))


def test_log_rank_is_azs_sum_of_log_relative_ranks(scratch_registry) -> None:
    agg = register_aggregate("lr", ("synflow", "wrcor"), "log_rank")
    m = np.array([[1.0, 30.0], [2.0, 10.0], [3.0, 20.0], [INF, INF]])
    # ranks (1 = worst) per member: synflow [2, 3, 4, 1], wrcor [4, 2, 3, 1]; n = 4
    expected = np.log(np.array([2, 3, 4, 1]) / 4) + np.log(np.array([4, 2, 3, 1]) / 4)
    np.testing.assert_allclose(agg.scores(m), expected)
    assert agg.order(m).tolist() == [2, 0, 1, 3]
    mean = register_aggregate("mr", ("synflow", "wrcor"), "mean_rank")
    np.testing.assert_allclose(mean.scores(m), [3.0, 2.5, 3.5, 1.0])


def test_score_on_an_aggregate_explains_how_to_use_it() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    with pytest.raises(ValueError, match=r"'sjw' is an aggregate .* ranks a population, not one network.*score_many"):
        proxies.score("sjw", model, torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))
