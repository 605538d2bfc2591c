"""Metric functions against hand-computed cases."""

import math

import numpy as np
import pytest

from llara_kit.metrics import bootstrap_interval, per_sample, summarise, target_ranks


def test_target_ranks_with_ties_broken_by_candidate_order():
    scores = np.array([[0.1, 0.9, 0.5], [1.0, 1.0, 1.0], [3.0, 2.0, 1.0]])
    assert target_ranks(scores, np.array([2, 1, 0])).tolist() == [1, 1, 0]


def test_hand_computed_values():
    ranks = np.array([0, 1, 4, 9])
    assert per_sample(ranks, "HR@1").mean() == 0.25
    assert per_sample(ranks, "HR@5").mean() == 0.75
    ndcg5 = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4
    assert per_sample(ranks, "NDCG@5").mean() == pytest.approx(ndcg5)
    ndcg10 = ndcg5 + 1 / math.log2(11) / 4
    assert per_sample(ranks, "NDCG@10").mean() == pytest.approx(ndcg10)
    assert per_sample(ranks, "MRR").mean() == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 4)
    with pytest.raises(ValueError, match="Unknown metric"):
        per_sample(ranks, "MAP@3")


def test_bootstrap_interval():
    values = np.r_[np.ones(30), np.zeros(70)]
    low, high = bootstrap_interval(values)
    assert low < 0.3 < high and 0.1 < high - low < 0.25  # about +-1.96 * sqrt(.21 / 100)
    assert bootstrap_interval(np.ones(10)) == (1.0, 1.0)
    summary = summarise(np.array([0, 0, 3]), ("HR@1",))
    assert summary["HR@1"]["value"] == pytest.approx(2 / 3)
