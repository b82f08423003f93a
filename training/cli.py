"""What ``search.py`` and ``train.py`` share on the command line.

- A user's mistake is one line on stderr and exit code 2 (:func:`run_program`): the package's own
  ``ValueError``/``TypeError``/``FileNotFoundError`` (raised in ``nas/``, ``callbacks/``,
  ``datamodules/``, ``training/`` or the programs) name the bad value and what was expected, so
  the traceback adds nothing for a user. ``WRCOR_DEBUG=1`` shows it.
- Options are never matched by prefix (``--trainer.max_epoch`` is refused, naming
  ``--trainer.max_epochs``); an argparse error shows a short usage, the error and where to look.
- ``--help`` opens with what the program does and lists the option groups a user changes most
  first.
- Logs and checkpoints: when a run trains, a ``trainer.logger`` left unset becomes TensorBoard and
  CSV loggers in ``<default_root_dir>/tensorboard`` and ``<default_root_dir>/csv``, and
  ``--checkpoint.*`` (the best by ``val/acc1``) and ``--last_checkpoint.*`` (``last.ckpt``) write
  to ``--checkpoint.dirpath`` (default ``<default_root_dir>/checkpoints``). A run that does not
  train (a search with ``trainer.max_epochs: 0``) keeps neither, and shows no progress bar or
  model summary unless asked for.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from typing_extensions import override

from callbacks.requeue import RequeueOnSignal

#: Set to 1 to see the traceback of an error instead of its one line.
DEBUG_ENV = "WRCOR_DEBUG"
ROOT = Path(__file__).resolve().parents[1]
#: Where the package's own errors are raised (a user's input reached them).
PACKAGE_DIRS = tuple(ROOT / name for name in ("nas", "callbacks", "datamodules", "training"))
PROGRAMS = (ROOT / "search.py", ROOT / "train.py")
DEBUG_HELP = (
    f"A mistake in the input prints one line and exits with code 2; {DEBUG_ENV}=1 shows its\n"
    "traceback. Options are never matched by prefix."
)
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


def debug() -> bool:
    """Whether ``WRCOR_DEBUG`` asks for tracebacks (any value but empty or ``0``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(text: str) -> str:
    """``text`` with its lines and runs of spaces joined into one line."""
    return " ".join(text.split())


def raised_by_package(err: BaseException) -> bool:
    """Whether ``err`` was raised in the package's own code (not in a library it calls)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    return path in PROGRAMS or any(path.is_relative_to(d) for d in PACKAGE_DIRS)


def run_program(main: Callable[[list[str] | None], object], args: Sequence[str] | None = None) -> int:
    """Run ``main(args)`` as a program; returns its exit code.

    The package's own ``ValueError``/``TypeError``/``FileNotFoundError`` become one line on
    stderr, ``<program>: error: <message>``, and exit code 2, unless ``WRCOR_DEBUG`` is set; any
    other exception propagates with its traceback. ``SystemExit`` (argparse) passes through.
    """
    module = getattr(main, "__module__", "__main__")
    prog = Path(sys.argv[0]).name if module == "__main__" else f"{module.rpartition('.')[2]}.py"
    try:
        main(None if args is None else list(args))
    except _USER_ERRORS as err:
        if debug() or not raised_by_package(err):
            raise
        message = one_line(str(err)) or type(err).__name__
        sys.stderr.write(f"{prog}: error: {message}\n")
        return 2
    return 0


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's formatter, keeping the line breaks of the program's description."""


class ArgumentParser(LightningArgumentParser):
    """A LightningArgumentParser with exact option names, a short usage and help in a given order.

    Args:
        short_usage: the usage line (``%(prog)s`` is the program), shown under the description in
            ``--help`` and above every argparse error instead of the full list of options.
        help_order: option groups (``"search"``, ``"model"``, ...) listed first in ``--help``.
        group_titles: titles for option groups, by group.
        args, kwargs: as :class:`~lightning.pytorch.cli.LightningArgumentParser`;
            ``allow_abbrev`` is False unless given.
    """

    def __init__(
        self,
        *args: Any,
        short_usage: str | None = None,
        help_order: Sequence[str] = (),
        group_titles: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        if short_usage is not None:
            kwargs["usage"] = argparse.SUPPRESS  # shown under the description instead
        super().__init__(*args, **kwargs)
        self.short_usage = short_usage
        self.help_order = tuple(help_order)
        self.group_titles = dict(group_titles or {})

    @override
    def format_usage(self) -> str:
        if self.short_usage is None:
            return super().format_usage()
        return f"usage: {self.short_usage % {'prog': self.prog}}\n"

    @override
    def format_help(self, *args: Any, **kwargs: Any) -> str:
        self._order_groups()
        if self.short_usage is None:
            return super().format_help(*args, **kwargs)
        description = self.description
        self.description = f"{description}\n\n{self.format_usage()}" if description else self.format_usage()
        try:
            return super().format_help(*args, **kwargs)
        finally:
            self.description = description

    def _order_groups(self) -> None:
        for key, title in self.group_titles.items():
            if key in self.groups:
                self.groups[key].title = title
        first = [self.groups[k] for k in self.help_order if k in self.groups]
        # argparse's own groups (positionals, options such as --config) stay on top
        own = (self._positionals, self._optionals, getattr(self, "_default_config_files_group", None))
        top = [g for g in self._action_groups if any(g is o for o in own)]
        rest = [g for g in self._action_groups if g not in top and g not in first]
        self._action_groups[:] = [*top, *first, *rest]

    @override
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug():
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        if not isinstance(parser, ArgumentParser) or parser.short_usage is None:
            super().error(message, ex)
        text = re.sub(r'Parser key "([^"]+)":', r"--\1:", one_line(message))
        sys.stderr.write(parser.format_usage())
        sys.stderr.write(f"{parser.prog}: error: {text}{parser._did_you_mean(text)}\n")
        sys.stderr.write(f"See '{parser.prog} --help' for every option.\n")
        self.exit(2)

    def _did_you_mean(self, message: str) -> str:
        """`` (did you mean --x.y?)`` for the unknown options named in ``message``."""
        known = [o for o in self._option_string_actions if o.startswith("--")]
        given = re.findall(r"(--[\w.]+)", message.partition("unrecognized arguments:")[2])
        close = [m for g in given for m in difflib.get_close_matches(g, known, n=1, cutoff=0.8)]
        return f" (did you mean {', '.join(close)}?)" if close else ""


def add_checkpoint_arguments(parser: LightningArgumentParser) -> None:
    """``--checkpoint.*`` (the best by ``val/acc1``) and ``--last_checkpoint.*`` (``last.ckpt``).

    ``last_checkpoint`` writes ``last.ckpt`` into the same folder at every epoch end and every
    ``every_n_train_steps`` steps (with no monitor, so mid-epoch saves are never deferred to the
    next validation).
    """
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
    parser.set_defaults(
        {
            "checkpoint.monitor": "val/acc1",
            "checkpoint.mode": "max",
            "checkpoint.save_top_k": 1,
            "checkpoint.save_last": False,
            "checkpoint.filename": "epoch{epoch:03d}-acc1_{val/acc1:.4f}",
            "checkpoint.auto_insert_metric_name": False,
            "last_checkpoint.monitor": None,
            "last_checkpoint.save_top_k": 0,
            "last_checkpoint.save_last": True,
        }
    )
    parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")


def default_loggers(root: str | Path) -> list[Logger]:
    """TensorBoard and CSV loggers in ``root/tensorboard`` and ``root/csv``, as the train configs."""
    return [TensorBoardLogger(save_dir=root, name="tensorboard"), CSVLogger(save_dir=root, name="csv")]


class ProgramCLI(LightningCLI):
    """The LightningCLI of ``search.py`` and ``train.py``: the parser above, checkpoints, logs.

    Subclasses say whether a run trains (:meth:`trains`) and where its files go when
    ``trainer.default_root_dir`` is unset (:meth:`default_root_dir`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", ArgumentParser)
        super().__init__(*args, **kwargs)

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_checkpoint_arguments(parser)

    def trains(self, trainer: Mapping[str, Any]) -> bool:
        """Whether the run, with these trainer arguments, trains (``fit``, or no subcommand)."""
        fits = self.subcommand in (None, "fit")
        return fits and trainer.get("max_epochs") != 0 and trainer.get("max_steps") != 0

    def default_root_dir(self) -> str | None:
        """``trainer.default_root_dir`` when the configuration leaves it unset (None: Lightning's)."""
        return None

    @override
    def _set_seed(self) -> None:
        # As LightningCLI, without its "Seed set to 0" line: the seed is in the configuration, and
        # a mistake found next is the only line a user should read. A random seed is still told.
        seed = self._get(self.config, "seed_everything")
        if seed is False:
            return
        seed = seed_everything(workers=True) if seed is True else seed_everything(seed, workers=True, verbose=False)
        self._config()["seed_everything"] = seed

    def _config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    @override
    def before_instantiate_classes(self) -> None:
        config = self._config()
        if config.trainer.get("default_root_dir") is None:
            config.trainer.default_root_dir = self.default_root_dir()
        root = config.trainer.default_root_dir or os.getcwd()
        if config.checkpoint.get("dirpath") is None:
            config.checkpoint.dirpath = config.last_checkpoint.dirpath = str(Path(root) / "checkpoints")

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks: list[Callback] = [
            self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys
        ]
        if self.trains(config):
            if SLURMEnvironment.detect() and not config.get("plugins"):
                # preemption at a batch boundary: no step lost or repeated (callbacks.RequeueOnSignal)
                config["plugins"] = [SLURMEnvironment(auto_requeue=False)]
                callbacks.append(RequeueOnSignal())
            if config.get("logger") is None:
                config["logger"] = default_loggers(config.get("default_root_dir") or os.getcwd())
            if config.get("logger") is not False:
                callbacks.append(LearningRateMonitor(logging_interval="step"))
        elif self.subcommand is None:  # a program without subcommands that does not train: a search
            for key in ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary"):
                if config.get(key) is None:
                    config[key] = False
            if config["enable_checkpointing"] is False:
                callbacks = [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]
            self.save_config_callback = None
        return self._instantiate_trainer(config, callbacks)
