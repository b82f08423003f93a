from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import timm

import nas
from nas.winner import Winner, choose_model, resolve_model
from tests.conftest import RESNET_CELL


def _winner(**overrides) -> Winner:
    fields = dict(
        space="nb201",
        arch=RESNET_CELL,
        model="nb201",
        model_kwargs={"arch": RESNET_CELL},
        score=-123.5,
        proxy="wrcor",
        flops=40_000_000,
        params=559_386,
        resolution=32,
        seed=0,
        config={"num_candidates": 100, "scores": {"wrcor": -123.5}},
    )
    fields.update(overrides)
    return Winner(**fields)


def test_round_trip(tmp_path: Path) -> None:
    w = _winner()
    path = w.to_yaml(tmp_path / "run" / "winner.yaml")
    assert path.is_file()
    assert Winner.from_yaml(path) == w
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.arch = "x"  # type: ignore[misc]


def test_resolve_model_from_winner_builds_the_architecture(tmp_path: Path) -> None:
    path = _winner().to_yaml(tmp_path / "winner.yaml")
    name, kwargs = resolve_model(str(path))
    assert (name, kwargs) == ("nb201", {"arch": RESNET_CELL})
    model = timm.create_model(name, num_classes=10, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == 559_386


def test_resolve_model_by_timm_name() -> None:
    assert resolve_model("resnet18") == ("resnet18", {})
    assert resolve_model("wrcor_600m") == ("wrcor_600m", {})
    with pytest.raises(
        ValueError, match=r"'resnet_nope' is neither a winner file .* nor a timm model"
    ):
        resolve_model("resnet_nope")


def test_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Winner.from_yaml(missing)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        resolve_model(str(missing))

    bad = tmp_path / "bad.yaml"
    bad.write_text("space: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml.*not valid YAML"):
        Winner.from_yaml(bad)

    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ValueError, match="scalar.yaml.*mapping"):
        Winner.from_yaml(scalar)

    partial = tmp_path / "partial.yaml"
    partial.write_text("space: nb201\narch: x\n")
    with pytest.raises(ValueError, match=r"partial.yaml.*misses field\(s\) \['model'"):
        Winner.from_yaml(partial)

    other_space = _winner(space="nope").to_yaml(tmp_path / "space.yaml")
    with pytest.raises(ValueError, match=r"space.yaml.*'nope'.*available: .*nb201"):
        Winner.from_yaml(other_space)
    assert "nope" not in nas.spaces.available()

    typo = tmp_path / "typo.yaml"
    typo.write_text(_winner().to_yaml(tmp_path / "ok.yaml").read_text() + "scroe: 1\n")
    with pytest.raises(ValueError, match=r"typo.yaml.*unknown field\(s\) \['scroe'\]"):
        Winner.from_yaml(typo)

    bad_model = _winner(model="not_a_timm_model").to_yaml(tmp_path / "model.yaml")
    with pytest.raises(ValueError, match="model.yaml.*'not_a_timm_model'.*not registered"):
        resolve_model(str(bad_model))


def test_the_winner_sets_the_architecture_and_the_config_keeps_the_rest(tmp_path: Path) -> None:
    """The hand-off rule: winner kwargs win, config kwargs add, a real contradiction is an error."""
    path = _winner().to_yaml(tmp_path / "winner.yaml")
    choice = choose_model(str(path), {"channels": 16, "cells_per_stage": 5, "drop_rate": 0.1})
    assert choice.model == "nb201" and choice.winner == _winner()
    assert choice.model_kwargs == {"arch": RESNET_CELL, "channels": 16, "cells_per_stage": 5, "drop_rate": 0.1}
    assert choose_model(str(path), {"arch": RESNET_CELL}).model_kwargs == {"arch": RESNET_CELL}, (
        "a value equal to the winner's is no contradiction"
    )
    other = "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(ValueError) as info:
        choose_model(str(path), {"arch": other, "channels": 8})
    message = str(info.value)
    assert "\n" not in message, "one line"
    for part in (f"arch={other!r}", f"arch={RESNET_CELL!r}", "winner.yaml", "remove arch from model_kwargs"):
        assert part in message, f"{part!r} missing from: {message}"
    assert "channels" not in message, "only the contradicting key is named"


def test_choose_model_by_timm_name_takes_the_kwargs_as_given() -> None:
    choice = choose_model("resnet18", {"drop_rate": 0.2})
    assert (choice.model, choice.model_kwargs, choice.winner) == ("resnet18", {"drop_rate": 0.2}, None)
