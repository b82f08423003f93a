"""Zero-shot architecture search: score untrained candidates with a proxy, keep the best.

The default configuration searches NAS-Bench-201 with WRCor on the CIFAR-10 sample shipped with
the package; every setting can be overridden::

    python search.py                                              # configs/search/nb201_cifar10.yaml
    python search.py --search.algorithm evolution --search.num_candidates 1000
    python search.py --config configs/search/mbv2_imagenet.yaml --data.init_args.root /data/imagenet
    python search.py --trainer.max_epochs 50                      # search, then train the winner

The search runs in the :class:`callbacks.ZeroShotSearch` callback at the start of ``fit``, before
any optimizer step, and hands the winner to the LightningModule; with ``trainer.max_epochs: 0``
(the default here) the program stops after the search. Results go to ``--search.output_dir``:
``candidates.csv`` (every score, as computed), ``winner.yaml`` (for ``train.py --model.arch``),
``search.png``. Rerunning with the same folder resumes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import datamodules  # noqa: F401  (so class_path: datamodules.X resolves)
from callbacks import ZeroShotSearch
from nas.winner import Winner
from training import ClassificationModule

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search" / "nb201_cifar10.yaml"


class SearchCLI(LightningCLI):
    """LightningCLI with the search callback always present, configured under ``--search.*``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ZeroShotSearch, "search")


def main(args: Sequence[str] | None = None) -> Winner:
    """Run the search (and training, if ``trainer.max_epochs > 0``); returns the winner.

    The default configuration applies only when no ``--config`` is given, so a configuration
    such as ``mbv2_imagenet.yaml`` never inherits NAS-Bench-201 values it does not set.
    """
    argv = list(sys.argv[1:] if args is None else args)
    parser_kwargs: dict[str, Any] = {"parser_mode": "omegaconf"}
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        parser_kwargs["default_config_files"] = [str(DEFAULT_CONFIG)]
    cli = SearchCLI(
        ClassificationModule,
        LightningDataModule,
        subclass_mode_data=True,
        run=False,
        args=args,
        seed_everything_default=0,
        save_config_callback=None,
        parser_kwargs=parser_kwargs,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    search = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ZeroShotSearch))
    assert search.winner is not None
    return search.winner


if __name__ == "__main__":
    main()
