"""The result of a search, as written to ``runs/search/<name>/winner.yaml`` and read by training.

A :class:`Winner` names the architecture twice: as the search space's canonical string
(``space`` + ``arch``) and as a timm model (``model`` + ``model_kwargs``), so training needs only
``timm.create_model(winner.model, **winner.model_kwargs)``.

How a winner and a training configuration combine (:func:`choose_model`): the winner sets the
architecture, that is the timm model and every keyword argument it records; the configuration's
``model_kwargs`` add what the winner does not set (width, depth, drop rates: whatever the model
takes). A key that both set must have the same value; different values are an error that names
both. The winner's ``resolution`` is the input side it was searched (and costed) at.

Example:
    >>> import nas.winner
    >>> name, kwargs = nas.winner.resolve_model("resnet18")
    >>> (name, kwargs)
    ('resnet18', {})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import yaml

import nas.models  # noqa: F401  (registers this project's timm models)
import nas.spaces

_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Winner:
    """The best architecture of a search and how it was found.

    Args:
        space: registered search space name (see :func:`nas.spaces.available`).
        arch: the architecture's canonical string in that space.
        model: timm model name that builds it.
        model_kwargs: keyword arguments for ``timm.create_model(model, **model_kwargs)``.
        score: the proxy score of the winner (larger is better).
        proxy: the proxy that scored it.
        flops: multiply-accumulates of one forward pass at ``resolution``.
        params: number of parameters.
        resolution: input side length the search used.
        seed: the search's seed.
        config: the search's full configuration, for the record.
    """

    space: str
    arch: str
    model: str
    model_kwargs: dict[str, Any]
    score: float
    proxy: str
    flops: int
    params: int
    resolution: int
    seed: int
    config: dict[str, Any] = field(default_factory=dict)

    def to_yaml(self, path: str | Path) -> Path:
        """Write the winner to ``path`` (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dataclasses.asdict(self)
        data["score"] = float(self.score)
        data["flops"] = int(self.flops)
        data["params"] = int(self.params)
        with path.open("w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        return path

    @classmethod
    def from_yaml(cls, path: str | Path) -> Winner:
        """Read a winner file.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not YAML, is not a mapping, misses or adds fields, or names an
                unknown search space.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"winner file {str(path)!r} does not exist (search.py writes one into its "
                "--search.output_dir)"
            )
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"winner file {str(path)!r} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(
                f"winner file {str(path)!r} must hold a mapping of fields, got {type(data).__name__}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.name != "config"]
        missing = [n for n in required if n not in data]
        if missing:
            raise ValueError(
                f"winner file {str(path)!r} misses field(s) {missing}; expected: {', '.join(names)}"
            )
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(
                f"winner file {str(path)!r} has unknown field(s) {unknown}; expected: {', '.join(names)}"
            )
        if data["space"] not in nas.spaces.available():
            raise ValueError(
                f"winner file {str(path)!r} names search space {data['space']!r}; "
                f"available: {', '.join(nas.spaces.available())}"
            )
        for key in ("model_kwargs", "config"):
            if data.get(key) is None:
                data[key] = {}
            if not isinstance(data[key], dict):
                raise ValueError(
                    f"winner file {str(path)!r}: {key} must be a mapping, got {type(data[key]).__name__}"
                )
        try:
            return cls(
                space=str(data["space"]),
                arch=str(data["arch"]),
                model=str(data["model"]),
                model_kwargs=dict(data["model_kwargs"]),
                score=float(data["score"]),
                proxy=str(data["proxy"]),
                flops=int(data["flops"]),
                params=int(data["params"]),
                resolution=int(data["resolution"]),
                seed=int(data["seed"]),
                config=dict(data.get("config", {})),
            )
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"winner file {str(path)!r} has a field of the wrong type: {err}"
            ) from err


@dataclass(frozen=True)
class ModelChoice:
    """The network to train: a timm model, its keyword arguments and the winner it came from.

    Args:
        model: timm model name.
        model_kwargs: keyword arguments for ``timm.create_model`` (``num_classes`` aside).
        winner: the search's winner when the model came from a winner file, else None.
    """

    model: str
    model_kwargs: dict[str, Any]
    winner: Winner | None = None


def choose_model(spec: str, model_kwargs: Mapping[str, Any] | None = None) -> ModelChoice:
    """The model ``spec`` names, with ``model_kwargs`` from a configuration combined in.

    With a timm model name, ``model_kwargs`` are taken as given. With a winner file, the winner
    sets the architecture (its ``model`` and ``model_kwargs``) and ``model_kwargs`` add the keys
    the winner does not set; a key set by both to different values is a contradiction.

    Args:
        spec: a path to a ``winner.yaml`` (``.yaml``/``.yml``), or a registered timm model name.
        model_kwargs: the configuration's keyword arguments for the model.

    Raises:
        FileNotFoundError: ``spec`` looks like a YAML path that does not exist.
        ValueError: ``spec`` is neither a readable winner file nor a timm model name, or
            ``model_kwargs`` contradict the winner (the message names both values).
        TypeError: ``spec`` is not a non-empty string, or ``model_kwargs`` is not a mapping.
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"a model spec must be a non-empty str, got {spec!r}")
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs must be a mapping, got {type(model_kwargs).__name__}")
    extra = dict(model_kwargs or {})
    path = Path(spec)
    if path.suffix in _YAML_SUFFIXES or path.is_file():
        winner = Winner.from_yaml(path)
        if not timm.is_model(winner.model):
            raise ValueError(
                f"winner file {spec!r} names timm model {winner.model!r}, which is not registered"
            )
        clash = [k for k in extra if k in winner.model_kwargs and extra[k] != winner.model_kwargs[k]]
        if clash:
            ours = " and ".join(f"{k}={extra[k]!r}" for k in clash)
            theirs = " and ".join(f"{k}={winner.model_kwargs[k]!r}" for k in clash)
            raise ValueError(
                f"model_kwargs {ours} contradict the winner file {spec!r}, which sets {theirs} (the "
                f"winner sets the architecture): remove {', '.join(clash)} from model_kwargs, or train "
                "without the winner file"
            )
        return ModelChoice(winner.model, {**extra, **winner.model_kwargs}, winner)
    if timm.is_model(spec):
        return ModelChoice(spec, extra)
    close = timm.list_models(f"*{spec}*")[:10]
    hint = f"; similar timm names: {', '.join(close)}" if close else ""
    raise ValueError(
        f"{spec!r} is neither a winner file (a path ending in .yaml/.yml) nor a timm model name "
        f"(see timm.list_models()){hint}"
    )


def resolve_model(spec: str) -> tuple[str, dict[str, Any]]:
    """Turn a winner file path or a timm model name into ``(model_name, model_kwargs)``.

    Args:
        spec: a path to a ``winner.yaml`` (``.yaml``/``.yml``), or a registered timm model name.

    Raises:
        FileNotFoundError: ``spec`` looks like a YAML path that does not exist.
        ValueError: ``spec`` is neither a readable winner file nor a timm model name.
    """
    choice = choose_model(spec)
    return choice.model, choice.model_kwargs
