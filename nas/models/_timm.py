"""timm's model interface, written once for the networks of the search spaces.

:class:`TimmNet` holds what the four families share: the classifier head (pooling, dropout,
linear), ``reset_classifier``, ``set_grad_checkpointing``, and ``forward_intermediates`` /
``prune_intermediate_layers`` over the feature levels ``stage_ends``; a family supplies how its
layers run to the levels (:meth:`TimmNet._forward_levels`, with :meth:`TimmNet._sequential_levels`
for a ``Sequential`` trunk) and what goes when layers are pruned (:meth:`TimmNet._prune`).
:func:`build_timm` and :func:`resolve_arch` are the shared steps of the ``@register_model`` entry
points.
"""

# No `from __future__ import annotations`: torch.fx copies forward's annotations into the code it
# generates, and TorchScript cannot resolve them as strings.
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from timm.layers import create_classifier
from timm.models import build_model_with_cfg
from timm.models._features import feature_take_indices
from torch import nn

A = TypeVar("A")
M = TypeVar("M", bound=nn.Module)


def cifar_cfg(**kwargs: Any) -> dict[str, Any]:
    """timm's pretrained configuration of a CIFAR-10 network (no weights), updated by ``kwargs``."""
    cfg = dict(
        url="",
        num_classes=10,
        input_size=(3, 32, 32),
        pool_size=(8, 8),
        crop_pct=1.0,
        interpolation="bilinear",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        first_conv="stem.0",
        classifier="classifier",
    )
    cfg.update(kwargs)
    return cfg


def networks_unpretrained(variant: str) -> str:
    """The error for ``pretrained=True`` with the networks of ``variant``."""
    return f"{variant} networks have no pretrained weights; use pretrained=False"


def check_args(
    family: str, kwargs: dict[str, Any], name: str, value: object, cls: type, expected: str
) -> None:
    """Raise ``TypeError`` for arguments ``kwargs`` a ``family`` network does not take, or for an
    architecture ``value`` (argument ``name``) that is not a ``cls`` (``expected`` names it)."""
    if kwargs:
        raise TypeError(f"unexpected argument(s) for the {family} network: {sorted(kwargs)}")
    _check_type(value, cls, name, expected)


def _check_type(value: object, cls: type, name: str, expected: str) -> None:
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")


def check_num_classes(num_classes: int) -> None:
    """Raise ``ValueError`` unless ``num_classes`` >= 0."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")


class TimmNet(nn.Module):
    """Base of the search spaces' networks: timm's classifier and feature-level interface.

    A subclass sets :attr:`family` (named in errors), calls :meth:`_init_timm` before building its
    layers and :meth:`_init_head` after, and defines ``stem``, ``stage_ends`` (the position of
    each feature level), ``feature_info``, ``forward_features``, :meth:`_forward_levels` and
    :meth:`_prune`.
    """

    #: The family's name in error messages.
    family: str = ""

    def _init_timm(
        self, num_classes: int, in_chans: int, drop_rate: float, drop_path_rate: float
    ) -> None:
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.grad_checkpointing = False

    def _init_head(
        self, num_features: int, num_classes: int, global_pool: str, drop_rate: float
    ) -> None:
        self.num_features = self.head_hidden_size = num_features
        self.global_pool, self.classifier = create_classifier(
            num_features, num_classes, global_pool
        )
        self.head_drop = nn.Dropout(drop_rate)

    def _classifier_kwargs(self) -> dict[str, Any]:
        """Extra ``create_classifier`` arguments for a new classifier (e.g. its device and dtype)."""
        return {}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier with ``num_classes`` outputs (0: none); pooling kept unless given.

        Other heads (DARTS's auxiliary one) keep their own classifier.
        """
        check_num_classes(num_classes)
        self.num_classes = num_classes
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        self.global_pool, self.classifier = create_classifier(
            self.num_features, num_classes, pool, **self._classifier_kwargs()
        )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature levels (timm's interface), and the final features unless ``intermediates_only``.

        Args:
            x: input images.
            indices: feature levels to return: the last ``n`` if an int, all if None, else
                the listed levels (negative from the end).
            norm: apply the final norm, where the network has one (NAS-Bench-201's BN-ReLU), to
                the last level's output; otherwise accepted for timm's interface.
            stop_early: skip the layers after the last level taken.
            output_fmt: ``"NCHW"``, the only layout.
            intermediates_only: return only the list of intermediates.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"{self.family} features are NCHW only, got output_fmt={output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        take = [self.stage_ends[i] for i in take_indices]
        stop = self.stage_ends[max_index] if stop_early else None
        x, intermediates = self._forward_levels(x, take, stop, norm, intermediates_only)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def _forward_levels(
        self,
        x: torch.Tensor,
        take: list[int],
        stop: int | None,
        norm: bool,
        only: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run to position ``stop`` (all if None): the output and the outputs at the positions
        ``take``; ``norm`` and ``only`` (intermediates only) as in :meth:`forward_intermediates`."""
        raise NotImplementedError(f"{type(self).__name__} must define _forward_levels")

    def _sequential_levels(
        self,
        x: torch.Tensor,
        trunk: nn.Sequential,
        take: list[int],
        stop: int | None,
        only: bool,
        first: int = 0,
        final: nn.Module | None = None,
        final_norm: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`_forward_levels` of ``stem`` then ``trunk``.

        Args:
            first: the position of ``trunk[0]``: 1 where the stem's output is level position 0.
            final: applied to the output when the whole trunk ran (and not ``only``).
            final_norm: apply ``final`` to the last level's intermediate too (timm's ``norm``).
        """
        # TorchScript cannot slice a Sequential
        if stop is not None and not torch.jit.is_scripting():
            trunk = trunk[: stop + 1 - first]
        last = self.stage_ends[-1]
        intermediates = []
        x = self.stem(x)
        if first == 1 and 0 in take:
            intermediates.append(x)
        position = first - 1
        for position, layer in enumerate(trunk, start=first):
            x = layer(x)
            if position in take:
                at_end = final_norm and final is not None and position == last
                intermediates.append(final(x) if at_end else x)
        if final is not None and not only and position == last:
            x = final(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers after the last level in ``indices`` (timm's interface); the kept levels.

        The pooling and classifier go with ``prune_head`` or when the layers they are sized for go;
        each family's :meth:`_prune` says what else goes (a final norm with ``prune_norm``).
        """
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        resized = self._prune(self.stage_ends[max_index], prune_norm, prune_head)
        if resized:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or resized:
            self.reset_classifier(0, "")
        return take_indices

    def _prune(self, end: int, prune_norm: bool, prune_head: bool) -> bool:
        """Drop the layers after position ``end``; whether the head's input width changed."""
        raise NotImplementedError(f"{type(self).__name__} must define _prune")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_timm(
    cls: type[M],
    variant: str,
    pretrained: bool,
    feature_cfg: dict[str, Any],
    no_weights: str | None = None,
    **kwargs: Any,
) -> M:
    """``cls`` through timm's ``build_model_with_cfg`` with the pretrained config of ``variant``.

    Args:
        feature_cfg: the family's feature-wrapper defaults, updated by ``kwargs["feature_cfg"]``.
        no_weights: the error message for ``pretrained`` (default: :func:`networks_unpretrained`).

    Raises:
        ValueError: ``pretrained`` (no weights are published).
    """
    if pretrained:
        raise ValueError(networks_unpretrained(variant) if no_weights is None else no_weights)
    feature_cfg = {**feature_cfg, **(kwargs.pop("feature_cfg", None) or {})}
    return build_model_with_cfg(cls, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def resolve_arch(
    value: A | str, cls: type[A], decode: Callable[[str], A], name: str, expected: str
) -> A:
    """``value`` as a ``cls``: decoded when a string.

    Raises:
        TypeError: neither a string nor a ``cls`` (the message: ``name`` must be ``expected``).
    """
    if isinstance(value, str):
        return decode(value)
    _check_type(value, cls, name, expected)
    return value
