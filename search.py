"""Zero-shot architecture search: score untrained candidates with a proxy, keep the best.

The default configuration (configs/search/nb201_cifar10.yaml) searches NAS-Bench-201 with WRCor
on the CIFAR-10 sample shipped with the package; every setting can be overridden:

    python search.py                                              # configs/search/nb201_cifar10.yaml
    python search.py --search.algorithm evolution --search.num_candidates 1000
    python search.py --config configs/search/mbv2_imagenet.yaml --data.init_args.root /data/imagenet
    python search.py --trainer.max_epochs 50                      # search, then train the winner

The search runs in the callbacks.ZeroShotSearch callback at the start of fit, before any
optimizer step, and hands the winner to the LightningModule. Results go to --search.output_dir:
candidates.csv (every score, as computed), winner.yaml (for train.py --model.arch), search.png.
Rerunning with the same folder resumes. With trainer.max_epochs 0 (the default here) the program
stops after the search and keeps no logs or checkpoints; with trainer.max_epochs N > 0 it trains
the winner and keeps them as train.py does: TensorBoard and CSV logs and checkpoints (the best
by val/acc1, last.ckpt) in <output_dir>/train unless --trainer.default_root_dir says otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser

import datamodules  # noqa: F401  (so class_path: datamodules.X resolves, and --help lists them)
from callbacks import ZeroShotSearch
from nas.winner import Winner
from training import ClassificationModule
from training.cli import DEBUG_HELP, ArgumentParser, ProgramCLI, run_program

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search" / "nb201_cifar10.yaml"
_HELP = {
    "short_usage": "%(prog)s [--config FILE] [--search.NAME VALUE] [--data.init_args.NAME VALUE] "
    "[--model.NAME VALUE] [--trainer.NAME VALUE]",
    "help_order": ("search", "data", "model", "trainer", "checkpoint", "last_checkpoint"),
    "group_titles": {
        "search": "The search: space, proxy, algorithm, budget, output folder",
        "data": "The data the scoring batch is drawn from (--data: a datamodule class; --data.init_args.*)",
        "model": "The network the winner replaces; its training recipe when --trainer.max_epochs > 0",
        "trainer": "The Lightning Trainer (devices; --trainer.max_epochs N > 0 trains the winner)",
        "checkpoint": "When training: the best checkpoint by val/acc1 (--checkpoint.dirpath)",
        "last_checkpoint": "When training: last.ckpt, every epoch and every N steps",
    },
}


class SearchCLI(ProgramCLI):
    """LightningCLI with the search callback always present, configured under ``--search.*``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(ZeroShotSearch, "search")

    def default_root_dir(self) -> str:
        return str(Path(self._config().search.output_dir) / "train")


def main(args: Sequence[str] | None = None) -> Winner:
    """Run the search (and training, if ``trainer.max_epochs > 0``); returns the winner.

    The default configuration applies only when no ``--config`` is given, so a configuration
    such as ``mbv2_imagenet.yaml`` never inherits NAS-Bench-201 values it does not set.
    """
    argv = list(sys.argv[1:] if args is None else args)
    parser_kwargs: dict[str, Any] = {
        "parser_mode": "omegaconf",
        "description": f"{__doc__.strip()}\n\n{DEBUG_HELP}",
        **_HELP,
    }
    if not any(a in ("--config", "-c") or a.startswith("--config=") for a in argv):
        parser_kwargs["default_config_files"] = [str(DEFAULT_CONFIG)]
    cli = SearchCLI(
        ClassificationModule,
        LightningDataModule,
        subclass_mode_data=True,
        parser_class=ArgumentParser,
        run=False,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=parser_kwargs,
        auto_configure_optimizers=False,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    search = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ZeroShotSearch))
    assert search.winner is not None
    return search.winner


if __name__ == "__main__":
    sys.exit(run_program(main))
