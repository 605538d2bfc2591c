"""Progress lines where the output is not a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from llara_kit.errors import LlaraKitError
from llara_kit.progress import EVERY_ENV, Progress


def plain_lines(label: str, total: int, unit: str, advances: int, info: str,
                width: int = 200) -> list[str]:
    """What a progress prints into a file (not a terminal) over ``advances`` single units."""
    out = io.StringIO()
    with Progress(label, total, unit, console=Console(file=out, width=width)) as progress:
        for _ in range(advances):
            progress.advance(1, info)
    return out.getvalue().splitlines()


def test_plain_lines_after_the_first_unit_then_every_period_and_at_the_end(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "3600")
    lines = plain_lines("scoring", 5, "users", 5, "batch ok", width=60)
    assert len(lines) == 2, lines  # no wrapping at 60 columns, nothing in between
    assert lines[0].startswith("scoring: 1/5 users (20%), batch ok, ") and "ETA" in lines[0]
    assert lines[1].startswith("scoring: 5/5 users (100%), batch ok, ")
    assert "elapsed" in lines[1] and "ETA" not in lines[1]


def test_a_resumed_count_and_hidden_progress(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "0")
    out = io.StringIO()
    with Progress("training", 10, "steps", console=Console(file=out), completed=8) as p:
        p.advance()
        assert p.line(2.0).startswith("training: 9/10 steps (90%), 0.5 steps/s, 0:00:02 "
                                      "elapsed, ETA 0:00:02")
    assert out.getvalue().startswith("training: 9/10 steps (90%)")
    quiet = io.StringIO()
    with Progress("training", 2, "steps", console=Console(file=quiet), show=False) as p:
        p.advance(2)
    assert quiet.getvalue() == ""


def test_work_that_stops_early_prints_where_it_ended(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "3600")
    lines = plain_lines("pre-training", 15, "epochs", 12, "valid MRR 0.3")
    assert [x.split(",")[0] for x in lines] == ["pre-training: 1/15 epochs (7%)",
                                                "pre-training: 12/15 epochs (80%)"]


def test_a_period_that_is_not_a_number_is_one_sentence(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "half a minute")
    with pytest.raises(LlaraKitError, match=r"LLARA_KIT_PROGRESS_SECONDS='half a minute' is "
                                            r"not a number of seconds; give one"):
        with Progress("training", 2, "steps", console=Console(file=io.StringIO())):
            pass
