"""Progress of long work (training, pre-training, scoring): a live bar on a terminal, plain
lines where the output goes to a file or a pipe (a log, CI, nohup, a cluster job), one every
``$LLARA_KIT_PROGRESS_SECONDS`` (30 by default), after the first unit and at the end."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bar

from llara_kit.errors import LlaraKitError

EVERY_ENV = "LLARA_KIT_PROGRESS_SECONDS"
EVERY = 30.0


class Progress:
    """``with Progress("training", 32, "steps") as p: ... p.advance(1, "loss 2.3")``; with
    ``show`` false nothing is printed. ``completed`` units were done before (a resumed run)."""

    def __init__(self, label: str, total: int, unit: str, *, show: bool = True,
                 console: Console | None = None, completed: int = 0):
        self.label, self.total, self.unit, self.show = label, total, unit, show
        self.console = console or Console(stderr=True)
        self.done = self.first = completed
        self.bar: Bar | None = None
        self.started = self.printed = 0.0
        self.printed_done, self.info = completed, ""

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        self.printed = -float("inf")
        self.every = _seconds(os.environ.get(EVERY_ENV, str(EVERY)))
        if self.show and (self.console.is_terminal or self.console.is_jupyter):
            self.bar = Bar(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn(self.unit), TextColumn("{task.fields[info]}"),
                           TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done,
                                          info="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif self.show and exc[0] is None and self.done > self.printed_done:
            self._print()  # stopped early (an encoder's patience ran out): where it ended

    def advance(self, n: int = 1, info: str = "") -> None:
        self.done += n
        if not self.show:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=n, info=info)
            return
        self.info = info
        if time.monotonic() - self.printed >= self.every or self.done >= self.total:
            self._print()

    def _print(self) -> None:
        self.printed, self.printed_done = time.monotonic(), self.done
        self.console.print(self.line(self.printed - self.started, self.info), soft_wrap=True,
                           markup=False, highlight=False)

    def line(self, elapsed: float, info: str = "") -> str:
        """``training: 12/32 steps (38%), loss 2.310, 0.41 steps/s, 0:00:29 elapsed, ETA
        0:00:49``: the rate and ETA over the units done since this progress began."""
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label}: {self.done}/{self.total} {self.unit} "
                 f"({self.done / max(self.total, 1):.0%})", *([info] if info else []),
                 f"{rate:.3g} {self.unit}/s", f"{_clock(elapsed)} elapsed"]
        if self.done < self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        return ", ".join(parts)


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise LlaraKitError(f"${EVERY_ENV}={value!r} is not a number of seconds; give one "
                            "(e.g. 30) or unset it.") from None


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
