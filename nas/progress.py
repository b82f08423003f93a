"""The rich progress bar of the evaluation commands and the search (imported lazily)."""

from __future__ import annotations

from typing import Any


def progress_bar(enabled: bool = True, *, label: str = "{task.description}", rate: bool = False, best: bool = False) -> Any:
    """A ``rich.progress.Progress`` with count, percent, elapsed time and ETA.

    ``rate`` adds a ``{task.fields[rate]} cand/s`` column and ``best`` a ``best {task.fields[best]}``
    column; tasks then need those fields. Disabled, it draws nothing.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )  # fmt: skip

    columns: list[Any] = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]} cand/s"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    if best:
        columns.append(TextColumn("best {task.fields[best]}"))
    return Progress(*columns, disable=not enabled)
