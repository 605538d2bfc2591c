"""Built-in curriculum schedules: p_hybrid(progress) for progress in [0, 1].

The trainer owns the progress (optimizer steps done / total steps) and asks the schedule
for the probability that the next sample uses the hybrid prompt.
"""

from __future__ import annotations

import math
from functools import partial

from llara_kit.errors import LlaraKitError
from llara_kit.hookspecs import Register, hookimpl
from llara_kit.plugins import build_component


class Schedule:
    """Base class: validates progress, subclasses implement ``p``."""

    def __call__(self, progress: float) -> float:
        if not isinstance(progress, (int, float)) or not 0.0 <= progress <= 1.0:
            raise LlaraKitError(
                f"Training progress {progress!r} is outside [0, 1]; pass steps done / total steps."
            )
        return float(self.p(float(progress)))

    def p(self, progress: float) -> float:
        raise NotImplementedError


def build_schedule(name: str, options: dict | None = None) -> Schedule:
    """The schedule plugin ``name`` with ``options``: the one place a schedule is built (a
    run's curriculum, the share of shortlists in training lists, the settings check)."""
    return build_component("schedule", name, **(options or {}))


class LinearSchedule(Schedule):
    """The paper's curriculum: p = progress."""

    def p(self, progress: float) -> float:
        return progress


class ConstantSchedule(Schedule):
    """A fixed share of hybrid samples (0 = text-only, TALLRec-like; 1 = hybrid-only)."""

    def __init__(self, value: float):
        if not 0.0 <= value <= 1.0:
            raise LlaraKitError(f"Constant schedule value {value!r} is outside [0, 1].")
        self.value = value

    def p(self, progress: float) -> float:
        return self.value


class TwoStageSchedule(Schedule):
    """Text-only until ``switch_at``, hybrid after (paper: 2 of 5 epochs text-only)."""

    def __init__(self, switch_at: float = 0.4):
        if not isinstance(switch_at, (int, float)) or not 0.0 < switch_at < 1.0:
            raise LlaraKitError(
                f"two-stage switch_at {switch_at!r} must lie strictly between 0 and 1, "
                "e.g. 0.4 for 2 text-only epochs out of 5."
            )
        self.switch_at = float(switch_at)

    def p(self, progress: float) -> float:
        return 0.0 if progress < self.switch_at else 1.0


class CosineSchedule(Schedule):
    """Slow start and finish: p = (1 - cos(pi * progress)) / 2."""

    def p(self, progress: float) -> float:
        return (1.0 - math.cos(math.pi * progress)) / 2.0


@hookimpl
def register_schedules(register: Register) -> None:
    register("linear", LinearSchedule, description="p = progress (paper's curriculum)")
    register("text-only", partial(ConstantSchedule, 0.0), description="p = 0 (TALLRec-like)")
    register("hybrid-only", partial(ConstantSchedule, 1.0), description="p = 1 from the start")
    register("two-stage", TwoStageSchedule, description="p = 0, then 1 from switch_at (0.4)")
    register("cosine", CosineSchedule, description="p = (1 - cos(pi * progress)) / 2")
