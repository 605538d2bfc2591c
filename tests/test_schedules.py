"""Built-in curriculum schedules: values, monotonicity, argument checks."""

import pytest

import llara_kit
from llara_kit.errors import LlaraKitError

EXPECTED = {  # p at progress 0, 0.5, 1
    "linear": (0.0, 0.5, 1.0),
    "text-only": (0.0, 0.0, 0.0),
    "hybrid-only": (1.0, 1.0, 1.0),
    "two-stage": (0.0, 1.0, 1.0),  # switch at 0.4 by default
    "cosine": (0.0, 0.5, 1.0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_values_at_0_half_1(name):
    p = llara_kit.get_schedule(name)()
    assert tuple(p(x) for x in (0.0, 0.5, 1.0)) == pytest.approx(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_monotone_and_bounded(name):
    p = llara_kit.get_schedule(name)()
    values = [p(i / 100) for i in range(101)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a for a, b in zip(values[:-1], values[1:], strict=True))


def test_cosine_is_slow_at_the_ends():
    p = llara_kit.get_schedule("cosine")()
    assert p(0.1) < 0.1 and p(0.9) > 0.9


def test_two_stage_switch_point():
    p = llara_kit.get_schedule("two-stage")(switch_at=0.6)
    assert p(0.59) == 0.0 and p(0.6) == 1.0


@pytest.mark.parametrize("progress", [-0.1, 1.5, float("nan"), "half"])
def test_progress_outside_unit_interval_is_rejected(progress):
    with pytest.raises(LlaraKitError, match="outside \\[0, 1\\]"):
        llara_kit.get_schedule("linear")()(progress)


@pytest.mark.parametrize("switch_at", [0.0, 1.0, -2, "x"])
def test_two_stage_rejects_bad_switch(switch_at):
    with pytest.raises(LlaraKitError, match="strictly between 0 and 1"):
        llara_kit.get_schedule("two-stage")(switch_at=switch_at)
