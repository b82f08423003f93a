"""Train a timm classifier (a searched winner or any timm model) with Lightning.

Every setting lives in a YAML file under configs/train/ and can be overridden on the command
line. configs/train/nb201_cifar10.yaml and configs/train/mbv2_imagenet.yaml train the winners of
the two search spaces:

    python train.py fit --config configs/train/nb201_cifar10.yaml --model.arch runs/search/nb201_cifar10/winner.yaml
    python train.py fit --config configs/train/imagenet_ffcv.yaml \\
        --model.arch runs/search/mbv2_imagenet/winner.yaml --trainer.devices 8 --data.init_args.batch_size 128
    python train.py fit --config configs/train/imagenet_ffcv.yaml --ckpt_path last   # resume
    python train.py validate --config configs/train/imagenet_ffcv.yaml --ckpt_path best

--model.arch takes a timm model name or the path to a search's winner.yaml. A winner sets the
architecture (its timm model and model_kwargs); the config's --model.model_kwargs add what it
does not set (width, depth, drop rates), and a key both set to different values is an error.
The data takes the winner's resolution (data.init_args.image_size, unless given on the command
line); training warns when its images have another size. Checkpoints go to --checkpoint.dirpath
(default <default_root_dir>/checkpoints): the best by val/acc1 and last.ckpt (every epoch, and
every --last_checkpoint.every_n_train_steps steps); --ckpt_path last resumes from there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

import datamodules  # noqa: F401  (so class_path: datamodules.X resolves, and --help lists them)
from nas.winner import choose_model
from training import ClassificationModule
from training.cli import DEBUG_HELP, ArgumentParser, ProgramCLI, run_program

SUBCOMMANDS = ("fit", "validate", "test")
_IMAGE_SIZE_FLAGS = ("--data.init_args.image_size", "--data.image_size")
_HELP = {
    "help_order": ("model", "data", "trainer", "checkpoint", "last_checkpoint"),
    "group_titles": {
        "model": "The network and its training recipe (--model.arch: a timm name or a winner.yaml)",
        "data": "The data (--data: a datamodule class; --data.init_args.*: its arguments)",
        "trainer": "The Lightning Trainer (devices, precision, epochs, logging)",
        "checkpoint": "The best checkpoint by val/acc1 (--checkpoint.dirpath: where all checkpoints go)",
        "last_checkpoint": "last.ckpt, every epoch and every --last_checkpoint.every_n_train_steps steps",
    },
}
_USAGE = "%(prog)s --config FILE [--model.arch NAME_OR_WINNER_YAML] [--model.NAME VALUE] [--data.init_args.NAME VALUE] [--trainer.NAME VALUE]"


def _description() -> str:
    return f"{__doc__.strip()}\n\n{DEBUG_HELP}"


class TrainCLI(ProgramCLI):
    """LightningCLI with two always-present, configurable checkpoint callbacks and a winner's resolution.

    ``--checkpoint.*`` keeps the best model by ``val/acc1``; ``--last_checkpoint.*`` writes
    ``last.ckpt`` into the same folder (see :func:`training.cli.add_checkpoint_arguments`).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        self._given = list(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        config = self._config()
        winner = choose_model(config.model.arch).winner if config.model.arch is not None else None
        init_args = config.data.get("init_args")
        if winner is None or init_args is None or "image_size" not in init_args:
            return
        given = any(a.split("=", 1)[0] in _IMAGE_SIZE_FLAGS for a in self._given)
        if not given and init_args.image_size != winner.resolution:
            _say(
                f"training at the winner's resolution {winner.resolution} (data.init_args.image_size "
                f"was {init_args.image_size}; give --data.init_args.image_size to choose another)"
            )
            init_args.image_size = winner.resolution


@rank_zero_only
def _say(message: str) -> None:
    sys.stderr.write(f"train.py: {message}\n")


def main(args: Sequence[str] | None = None, run: bool = True) -> LightningCLI:
    """Parse ``args`` (default: the command line), build everything and run the subcommand.

    Args:
        args: command-line arguments, e.g. ``["fit", "--config", "configs/train/cifar10.yaml"]``.
            With ``run=False`` there is no subcommand: the arguments configure the objects only.
        run: run the subcommand (``fit``/``validate``/``test``); False only instantiates.

    Returns:
        The CLI object, holding ``trainer``, ``model`` and ``datamodule``.
    """
    common: dict[str, Any] = {"parser_mode": "omegaconf+", "description": _description(), **_HELP}
    parser_kwargs: dict[str, Any] = {
        **common,
        "short_usage": "%(prog)s {fit,validate,test} --config FILE [options]   (%(prog)s fit --help: the options)"
        if run
        else _USAGE,
        **{name: {**common, "short_usage": _USAGE} for name in SUBCOMMANDS},
    }
    return TrainCLI(
        ClassificationModule,
        LightningDataModule,
        subclass_mode_data=True,
        parser_class=ArgumentParser,
        parser_kwargs=parser_kwargs,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    sys.exit(run_program(main))
