"""The LightningModule that trains any timm classifier, including a searched winner."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import param_groups_weight_decay
from timm.utils import ModelEmaV3
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from nas.winner import Winner, choose_model

OptimizerName = Literal["sgd", "adamw"]


def load_teacher(name: str, checkpoint: str | None, num_classes: int) -> nn.Module:
    """A frozen timm teacher in eval mode, with trained weights or an error.

    Args:
        name: timm model name (optionally with a pretrained tag, ``resnet152.a1h_in1k``).
        checkpoint: a timm-loadable weights file (``.pth``/``.safetensors``, classifier sized for
            ``num_classes``); None downloads timm's pretrained weights (needs network or the
            Hugging Face cache).
        num_classes: classes of the student (and the teacher's classifier).

    Raises:
        ValueError: unknown model; no pretrained weights known to timm; the pretrained classifier
            has another number of classes.
        FileNotFoundError: ``checkpoint`` does not exist, or the pretrained weights cannot be
            fetched (offline): the message says to pass a checkpoint.
    """
    if not timm.is_model(name):
        raise ValueError(f"teacher {name!r} is not a timm model name (see timm.list_models())")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"teacher checkpoint {str(path)!r} does not exist")
        model = timm.create_model(name, num_classes=num_classes, checkpoint_path=str(path))
    else:
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None or not (cfg.url or cfg.hf_hub_id or cfg.file):
            raise ValueError(
                f"timm knows no pretrained weights for teacher {name!r}; pass teacher_checkpoint=PATH "
                "to a trained weights file (an untrained teacher would only add noise)"
            )
        if cfg.num_classes != num_classes:
            raise ValueError(
                f"teacher {name!r}'s pretrained classifier has {cfg.num_classes} classes, the student "
                f"{num_classes}; pass teacher_checkpoint=PATH to weights trained for {num_classes} classes"
            )
        try:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes)
        except OSError as err:
            raise FileNotFoundError(
                f"could not load pretrained weights for teacher {name!r} ({type(err).__name__}: {err}). "
                "Without network access, fetch the weights elsewhere and pass teacher_checkpoint=PATH"
            ) from err
    model.requires_grad_(False)
    return model.eval()


class ClassificationModule(LightningModule):
    """Image classification with any timm model.

    The network is ``timm.create_model(arch, num_classes=num_classes, **model_kwargs)``, where
    ``arch`` is a timm model name or the path to a search's ``winner.yaml``. A winner sets the
    architecture and ``model_kwargs`` add what it does not set (width, depth, drop rates); a key
    both set to different values is an error (see :func:`nas.winner.choose_model`). Training
    warns when its images differ from the winner's ``resolution``. The optimizer is SGD
    (momentum) or AdamW with no weight decay on rank <= 1 tensors; the learning rate warms up
    linearly and follows a cosine to ``min_lr``, stepped every optimizer step. With
    ``lr_reference_batch`` set, ``lr`` is the rate for that many images per step and is scaled
    linearly to the global batch (per-device batch x world size x gradient accumulation).

    Args:
        arch: timm model name or path to a ``winner.yaml``; None builds no network until one is
            handed over (``set_network``, as ``callbacks.ZeroShotSearch`` does during ``setup``):
            ``configure_model`` then refuses to go on without one.
        model_kwargs: keyword arguments for the model (with a winner: those it does not set).
        num_classes: classifier outputs.
        optimizer: ``sgd`` or ``adamw``.
        lr: peak learning rate for ``lr_reference_batch`` images per step (or absolute if None).
        lr_reference_batch: batch size ``lr`` refers to; None disables scaling.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: decay of rank >= 2 tensors.
        warmup_epochs: linear warmup length in epochs (converted to optimizer steps).
        warmup_start_factor: the warmup starts at this fraction of the peak rate.
        min_lr: final learning rate of the cosine.
        label_smoothing: label smoothing of the training loss.
        mixup_alpha: mixup alpha (0 disables).
        cutmix_alpha: cutmix alpha (0 disables).
        mixup_prob: probability of mixing a batch.
        mixup_switch_prob: probability of cutmix instead of mixup when both are on.
        teacher: timm model name of a distillation teacher (None: no distillation).
        teacher_checkpoint: the teacher's weights file; None downloads timm's pretrained weights.
        distill_weight: weight of the distillation loss; the label loss gets ``1 - distill_weight``.
        distill_temperature: softmax temperature of the distillation loss.
        ema_decay: keep an EMA of the weights with this decay and validate it too (None: off).
        channels_last: channels-last memory format for the network and its inputs.
        compile: run the network through ``torch.compile``.

    Raises:
        ValueError/FileNotFoundError: an unknown model or winner file, bad numbers; teacher
            problems (see :func:`load_teacher`) at the start of fit.

    Example:
        >>> m = ClassificationModule("nb201", {"arch": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"}, num_classes=10)
    """

    def __init__(
        self,
        arch: str | None = "resnet50",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 1000,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.1,
        lr_reference_batch: int | None = 256,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 4e-5,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.01,
        min_lr: float = 0.0,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        teacher: str | None = None,
        teacher_checkpoint: str | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 1.0,
        ema_decay: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if lr <= 0 or min_lr < 0 or min_lr > lr:
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}")
        if lr_reference_batch is not None and lr_reference_batch < 1:
            raise ValueError(f"lr_reference_batch must be >= 1 or None, got {lr_reference_batch}")
        if warmup_epochs < 0 or not 0 < warmup_start_factor <= 1:
            raise ValueError(
                f"need warmup_epochs >= 0 and 0 < warmup_start_factor <= 1, got {warmup_epochs}, "
                f"{warmup_start_factor}"
            )
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup/cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0 <= distill_weight <= 1 or distill_temperature <= 0:
            raise ValueError(
                f"need 0 <= distill_weight <= 1 and distill_temperature > 0, got {distill_weight}, "
                f"{distill_temperature}"
            )
        if teacher_checkpoint is not None and teacher is None:
            raise ValueError("teacher_checkpoint is set but teacher (the timm model name) is not")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        self.save_hyperparameters()
        # The winner's resolution (the side it was searched and costed at) is checked against the
        # first training batch.
        self.winner: Winner | None = None
        self._arch_source = arch
        self._resolution_checked = True
        self.network: nn.Module
        self.ema: ModelEmaV3 | None = None
        if arch is not None:
            choice = choose_model(arch, model_kwargs)
            self.winner = choice.winner
            self._resolution_checked = choice.winner is None
            self.set_network(choice.model, choice.model_kwargs)

        self.mixup: Mixup | None = None
        if mixup_alpha > 0 or cutmix_alpha > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup_alpha,
                cutmix_alpha=cutmix_alpha,
                prob=mixup_prob,
                switch_prob=mixup_switch_prob,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
            self.train_loss: nn.Module = SoftTargetCrossEntropy()
        elif label_smoothing > 0:
            self.train_loss = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
        else:
            self.train_loss = nn.CrossEntropyLoss()
        self.eval_loss = nn.CrossEntropyLoss()

        accuracy = {"acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
        if num_classes >= 5:
            accuracy["acc5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        metrics = MetricCollection(accuracy)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.val_ema_metrics = metrics.clone(prefix="val_ema/")
        self.test_metrics = metrics.clone(prefix="test/")
        self._teacher: nn.Module | None = None
        self._ema_step = -1

    def set_network(self, model_name: str, model_kwargs: dict[str, Any] | None = None) -> None:
        """Replace the network by ``timm.create_model(model_name, num_classes=..., **model_kwargs)``.

        The choice is recorded in ``hparams`` (``arch``, ``model_kwargs``), so checkpoints saved
        afterwards reload this architecture. Call it before the optimizers are configured (a
        callback's ``setup`` hook is the place).

        Raises:
            RuntimeError: the optimizers already hold the old network's parameters.
            ValueError: unknown model name, or ``num_classes`` in ``model_kwargs`` disagrees.
        """
        if self._trainer is not None and self.trainer.optimizers:
            raise RuntimeError(
                "set_network() was called after configure_optimizers(); call it in a setup hook"
            )
        kwargs = dict(model_kwargs or {})
        num_classes = self.hparams.num_classes
        if kwargs.pop("num_classes", num_classes) != num_classes:
            raise ValueError(
                f"model_kwargs num_classes={model_kwargs['num_classes']} disagrees with "
                f"num_classes={num_classes}; set num_classes only"
            )
        if not timm.is_model(model_name):
            raise ValueError(f"{model_name!r} is not a timm model name (see timm.list_models())")
        network = timm.create_model(model_name, num_classes=num_classes, **kwargs)
        if self.hparams.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self.hparams["arch"] = model_name
        self.hparams["model_kwargs"] = kwargs
        self._set_untracked("_compiled", None)
        if self.hparams.ema_decay is not None:
            self.ema = ModelEmaV3(network, decay=self.hparams.ema_decay)
            self.ema.requires_grad_(False)

    def _set_untracked(self, name: str, value: Any) -> None:
        # Kept out of the module tree: not in checkpoints (the teacher is rebuilt from its own
        # file; a compiled wrapper would duplicate every key), not wrapped by DDP, not trained.
        object.__setattr__(self, name, value)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.hparams.compile:
            if self._compiled is None:
                self._set_untracked("_compiled", torch.compile(self.network))
            return self._compiled(x)
        return self.network(x)

    @override
    def train(self, mode: bool = True) -> ClassificationModule:
        super().train(mode)
        if self.ema is not None:
            self.ema.eval()
        return self

    @override
    def configure_model(self) -> None:
        if "network" not in self._modules:
            raise ValueError(
                "the module has no network: give --model.arch (a timm model name or a search's winner.yaml), "
                "or let a search hand one over (search.py)"
            )

    @override
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.teacher is not None and self._teacher is None:
            teacher = load_teacher(
                self.hparams.teacher, self.hparams.teacher_checkpoint, self.hparams.num_classes
            )
            self._set_untracked("_teacher", teacher)

    @override
    def on_fit_start(self) -> None:
        dm_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if dm_classes is not None and dm_classes > self.hparams.num_classes:
            raise ValueError(
                f"the data has {dm_classes} classes but the model num_classes={self.hparams.num_classes}"
            )
        if self._teacher is not None:
            memory = torch.channels_last if self.hparams.channels_last else torch.contiguous_format
            self._teacher.to(device=self.device, memory_format=memory)

    def _distill(
        self, x: torch.Tensor, student_logits: torch.Tensor, task_loss: torch.Tensor
    ) -> torch.Tensor:
        assert self._teacher is not None
        with torch.no_grad():
            teacher_logits = self._teacher(x)
        t = self.hparams.distill_temperature
        kd = F.kl_div(
            F.log_softmax(student_logits.float() / t, dim=-1),
            F.log_softmax(teacher_logits.float() / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (t * t)
        self.log("train/distill_loss", kd, on_step=True, on_epoch=True, sync_dist=True)
        w = self.hparams.distill_weight
        return (1 - w) * task_loss + w * kd

    @override
    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        targets = y
        if self.mixup is not None:
            if len(x) % 2:
                raise ValueError(
                    f"mixup/cutmix need an even batch, got {len(x)}; use an even batch size with drop_last"
                )
            x, targets = self.mixup(x, y)
        logits = self(x)
        loss = self.train_loss(logits, targets)
        if self._teacher is not None:
            loss = self._distill(x, logits, loss)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        if self.mixup is None:
            self.train_metrics.update(logits.detach(), y)
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._resolution_checked or self.winner is None:
            return
        self._resolution_checked = True
        winner = self.winner
        side = tuple(batch[0].shape[-2:])
        if side != (winner.resolution, winner.resolution):
            rank_zero_warn(
                f"the winner {self._arch_source!r} was searched at {winner.resolution}x"
                f"{winner.resolution} ({winner.flops:,} MACs), but trains on {side[0]}x{side[1]} images; "
                f"give the data the winner's resolution (--data.init_args.image_size {winner.resolution} "
                "where the datamodule takes one) to train the network that was searched"
            )

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # once per optimizer step (not per accumulated micro-batch)
        if self.ema is not None and self.global_step != self._ema_step:
            self.ema.update(self.network, step=self.global_step)
            self._ema_step = self.global_step

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: MetricCollection
    ) -> None:
        x, y = batch
        logits = self(x)
        self.log(
            f"{stage}/loss", self.eval_loss(logits, y), on_epoch=True, prog_bar=True, sync_dist=True
        )
        metrics.update(logits, y)
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val")
        if self.ema is not None and stage == "val":
            if self.hparams.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            ema_logits = self.ema.module(x)
            self.log("val_ema/loss", self.eval_loss(ema_logits, y), on_epoch=True, sync_dist=True)
            self.val_ema_metrics.update(ema_logits, y)
            self.log_dict(self.val_ema_metrics, on_epoch=True)

    @override
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    @override
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes (needs the training data set up)."""
        per_device = getattr(self.trainer.datamodule, "batch_size_per_device", None)
        if per_device is None:
            per_device = getattr(self.trainer.train_dataloader, "batch_size", None)
        if per_device is None:
            raise ValueError(
                "cannot tell the batch size to scale lr by: use a datamodule with "
                "batch_size_per_device or a DataLoader with batch_size, or set lr_reference_batch=None"
            )
        return int(per_device) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def peak_lr(self) -> float:
        """``lr`` scaled linearly to the global batch (or as given without a reference batch)."""
        ref = self.hparams.lr_reference_batch
        if ref is None:
            return self.hparams.lr
        return self.hparams.lr * self.global_batch_size() / ref

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        total_steps = int(self.trainer.estimated_stepping_batches)
        if total_steps < 1:
            raise ValueError(
                f"training has {total_steps} optimizer steps; check max_epochs/max_steps"
            )
        batches = self.trainer.num_training_batches
        if math.isfinite(batches):
            steps_per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches)
            warmup_steps = min(round(hp.warmup_epochs * steps_per_epoch), total_steps - 1)
        elif hp.warmup_epochs == 0:
            warmup_steps = 0  # an unsized loader (streaming, max_steps): the schedule needs no epoch length
        else:
            raise ValueError(
                f"warmup_epochs={hp.warmup_epochs} needs a train loader with a length: an epoch of an "
                "unsized loader has no known number of steps; set warmup_epochs=0"
            )
        lr = self.peak_lr()
        # rank <= 1 tensors (biases, norm scales and shifts) do not decay; frozen ones are left out
        groups = param_groups_weight_decay(self.network, hp.weight_decay)
        if hp.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=lr, momentum=hp.momentum, nesterov=hp.nesterov
            )
        else:
            opt = torch.optim.AdamW(groups, lr=lr)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=total_steps - warmup_steps, eta_min=hp.min_lr
        )
        scheduler: torch.optim.lr_scheduler.LRScheduler = cosine
        if warmup_steps > 0:
            warmup = torch.optim.lr_scheduler.LinearLR(
                opt, start_factor=hp.warmup_start_factor, end_factor=1.0, total_iters=warmup_steps
            )
            scheduler = torch.optim.lr_scheduler.SequentialLR(
                opt, schedulers=[warmup, cosine], milestones=[warmup_steps]
            )
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
