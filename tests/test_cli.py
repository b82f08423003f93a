"""What a user of search.py and train.py sees when something is wrong, and in --help."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import search
import train
from training.cli import DEBUG_ENV, run_program

ROOT = Path(__file__).resolve().parents[1]
CIFAR_CFG = str(ROOT / "configs" / "train" / "cifar10.yaml")
SMALL = ["--search.num_candidates", "2", "--search.batch_size", "8", "--trainer.accelerator", "cpu"]


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_bad_value_is_one_line_with_exit_code_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code = run_program(search.main, [*SMALL, "--search.proxy", "wrcr", "--search.output_dir", str(tmp_path)])
    err = _stderr_lines(capsys)
    assert code == 2, "a user's mistake exits with code 2"
    assert len(err) == 1, f"one line, no traceback: {err}"
    assert err[0].startswith("search.py: error: unknown proxy") and "'wrcr'" in err[0], err[0]

    code = run_program(train.main, ["fit", "--config", CIFAR_CFG, "--model.arch", str(tmp_path / "nope.yaml")])
    err = _stderr_lines(capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error: winner file") and "nope.yaml" in err[0], err[0]


def test_the_traceback_is_behind_the_debug_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="unknown proxy.*'wrcr'"):
        run_program(search.main, [*SMALL, "--search.proxy", "wrcr", "--search.output_dir", str(tmp_path)])


def test_errors_from_outside_the_package_keep_their_traceback(monkeypatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)

    def foreign(args: list[str]) -> None:
        raise ValueError("raised by code that is not the package's")  # this file is not in the package

    with pytest.raises(ValueError, match="not the package's"):
        run_program(foreign, [])


@pytest.mark.parametrize(
    ("main", "args", "given", "meant"),
    [
        (search.main, ["--trainer.max_epoch", "0"], "--trainer.max_epoch", "--trainer.max_epochs"),
        (search.main, ["--search.num_cand", "3"], "--search.num_cand", "--search.num_candidates"),
        (train.main, ["fit", "--config", CIFAR_CFG, "--trainer.max_epoch", "1"], "--trainer.max_epoch", "--trainer.max_epochs"),
    ],
)  # fmt: skip
def test_abbreviated_options_are_refused(main, args, given, meant, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args, "--search.output_dir", str(tmp_path)] if main is search.main else args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert given in err and meant in err, f"names the option given and the one meant:\n{err}"


def test_argparse_errors_show_a_short_usage(capsys) -> None:
    for main, args, option in [
        (search.main, ["--search.num_candidates", "abc"], "--search.num_candidates"),
        (search.main, ["--search.bogus", "1"], "--search.bogus"),
        (train.main, ["fit", "--config", CIFAR_CFG, "--model.lr", "fast"], "--model.lr"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        err = _stderr_lines(capsys)
        assert len(err) <= 4, f"a few lines, not the whole usage ({len(err)} lines):\n" + "\n".join(err)
        text = "\n".join(err)
        assert option in text, f"names the bad option:\n{text}"
        assert "--help" in text, f"points at --help:\n{text}"


def _listed(text: str, option: str) -> int:
    """Line number where ``option`` is listed in the help (not where the usage mentions it)."""
    lines = text.splitlines()
    return next(i for i, line in enumerate(lines) if line.lstrip().startswith(option + " "))


def _help(main, args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_opens_with_what_the_program_does_and_the_options_changed_most(capsys) -> None:
    text = _help(search.main, [], capsys)
    first = text.lstrip().splitlines()[0]
    assert first.startswith("Zero-shot architecture search"), f"opens with what it does: {first!r}"
    assert _listed(text, "--search.space") < _listed(text, "--data") < _listed(text, "--trainer.max_epochs"), (
        "--search.* first, then the data, the trainer last"
    )
    assert DEBUG_ENV in text, "the debug variable is documented"
    assert len(text.split("\n\n")[1].splitlines()) <= 4, "the usage in the help is short too"

    text = _help(train.main, ["fit"], capsys)
    assert text.lstrip().startswith("Train a timm classifier"), text[:200]
    assert _listed(text, "--model.arch") < _listed(text, "--data") < _listed(text, "--trainer.max_epochs")
    assert DEBUG_ENV in text
    assert _help(train.main, [], capsys).lstrip().startswith("Train a timm classifier")


@pytest.mark.slow
def test_the_programs_exit_with_code_2_and_one_line(tmp_path: Path) -> None:
    """The real entry points, as a user starts them; --help timed for the record."""
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV} | {"OMP_NUM_THREADS": "1"}
    for cmd in (
        [str(ROOT / "search.py"), "--search.proxy", "wrcr", "--search.output_dir", str(tmp_path)],
        [str(ROOT / "train.py"), "fit", "--config", CIFAR_CFG, "--model.arch", str(tmp_path / "nope.yaml")],
    ):
        out = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True, cwd=tmp_path)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1, (out.returncode, out.stderr[-2000:])
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "search.py"), "--help"], env=env, capture_output=True, text=True)
    print(f"search.py --help: {time.perf_counter() - start:.1f} s")
    assert out.returncode == 0 and out.stdout.startswith("Zero-shot")
