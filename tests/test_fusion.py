"""Encoder fusion and paired comparisons against hand-made cases."""

import math

import numpy as np
import pytest

from llara_kit.evaluation.fusion import choose_lambda, fuse, standardise, supported_lambda
from llara_kit.metrics import paired_difference


def _case(n: int = 200, C: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, C, n)
    informative = rng.normal(size=(n, C))
    informative[np.arange(n), target] += 3.0  # ranks the target first almost always
    return target, informative, rng.normal(size=(n, C))


def test_standardise_rows():
    z = standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert np.allclose(z[0], [-1.2247, 0, 1.2247], atol=1e-4) and (z[1] == 0).all()


def test_lambda_follows_the_informative_score():
    target, good, noise = _case()
    items = np.tile(np.arange(good.shape[1]), (len(target), 1))  # candidate j is item j
    lam, table = choose_lambda(noise, good, items, target)  # encoder informative, LLM noise
    assert lam >= 4 and table["inf"] > table["0"] + 0.3
    lam, table = choose_lambda(good, noise, items, target)  # the reverse
    assert lam <= 0.25 and table["0"] > table["inf"] + 0.3
    assert np.allclose(fuse(good, noise, 0.0), standardise(good))
    assert np.allclose(fuse(good, noise, math.inf), standardise(noise))


def test_ties_go_to_the_encoder_when_asked():
    """A second stage that only matches its encoder on valid is not used (recommend)."""
    target, good, _ = _case()
    items = np.tile(np.arange(good.shape[1]), (len(target), 1))
    assert choose_lambda(good, good, items, target)[0] == 0.0
    assert math.isinf(choose_lambda(good, good, items, target, ties_to_encoder=True)[0])
    missing = np.full(len(target), 99)  # targets outside every list: every lambda scores 0
    lam, table = choose_lambda(good, good, items, missing, ("NDCG@10",), ties_to_encoder=True)
    assert math.isinf(lam) and set(table.values()) == {0.0}


def test_paired_difference_and_mcnemar():
    a = np.array([1.0] * 30 + [0.0] * 70)
    b = np.array([0.0] * 20 + [1.0] * 10 + [0.0] * 70)  # 20 wins for a, 0 losses
    d = paired_difference(a, b, binary=True)
    assert d["value"] == pytest.approx(0.2) and d["low"] > 0 and d["p"] == pytest.approx(
        2 * 0.5**20)
    same = paired_difference(a, a, binary=True)
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    rng = np.random.default_rng(1)
    x = rng.random(300)
    assert paired_difference(x, x + rng.normal(0, 0.01, 300), binary=False)["p"] > 0.01
    assert paired_difference(x + 0.1, x, binary=False)["p"] < 1e-6


def test_recommend_uses_the_llm_only_on_a_supported_win():
    """A gain on valid whose paired interval reaches 0 leaves the encoder's order."""
    target, good, noise = _case()
    items = np.tile(np.arange(good.shape[1]), (len(target), 1))
    lam, _, gain = supported_lambda(good, noise, items, target, ("HR@1",))  # a clear win
    assert lam <= 0.25 and gain["low"] > 0 and gain["metric"] == "HR@1"
    slightly = good.copy()  # the LLM right on one more sample than the encoder: no support
    wrong = np.flatnonzero(good.argmax(1) != target)[:2]
    slightly[wrong[0], target[wrong[0]]] += 10
    lam, table, gain = supported_lambda(slightly, good, items, target, ("HR@1",))
    assert table["0"] > table["inf"]  # the LLM is ahead on valid ...
    assert math.isinf(lam) and gain["low"] <= 0 < gain["value"]  # ... but not supported
