"""Ranking metrics with 95% bootstrap intervals.

A rank is 0-based: 0 means the target came first. Ties are broken by the candidates' stored
order (itself random), so a model that scores everything alike lands at chance.
"""

from __future__ import annotations

import numpy as np

CANDIDATE_METRICS = ("HR@1", "HR@5", "NDCG@5", "NDCG@10", "MRR")
FULL_METRICS = ("HR@10", "NDCG@10")


def retrieved_metrics(size: int) -> tuple[str, ...]:
    """Metrics over the whole catalogue, where the target may lie outside the ``size`` items
    a method ranks (its rank is then infinite and every metric 0)."""
    return ("HR@1", "NDCG@10", "Recall@10", f"Recall@{size}", "MRR")


def target_ranks(scores: np.ndarray, target_pos: np.ndarray) -> np.ndarray:
    """Rank of each row's target among its columns: the columns scored higher, then those
    tied with it that come first (a stable sort's order; a NaN ranks below every number).
    O(C) per row, no sort, so it serves a whole catalogue as well as a candidate list.

    scores: (n, C), higher is better; target_pos: (n,) column of the target.
    """
    target = np.take_along_axis(scores, target_pos[:, None], axis=1)  # (n, 1)
    before = np.arange(scores.shape[1]) < target_pos[:, None]  # (n, C)
    nan = np.isnan(scores)
    ranked = (scores > target).sum(1) + ((scores == target) & before).sum(1)
    below_numbers = (~nan).sum(1) + (nan & before).sum(1)  # where the target is NaN
    return np.where(np.isnan(target[:, 0]), below_numbers, ranked)


def per_sample(ranks: np.ndarray, metric: str) -> np.ndarray:
    """The metric's value for each sample: ``HR@k`` (= ``Recall@k``: one target), ``NDCG@k``
    or ``MRR``; an infinite rank (a target never ranked) scores 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if metric == "MRR":
        return 1.0 / (ranks + 1.0)
    name, _, k = metric.partition("@")
    hit = ranks < int(k)
    if name in ("HR", "Recall"):
        return hit.astype(np.float64)
    if name == "NDCG":  # one relevant item: DCG = 1 / log2(rank + 2), ideal DCG = 1
        return np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    raise ValueError(f"Unknown metric {metric!r}; use HR@k, NDCG@k or MRR.")


def bootstrap_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def mean_with_interval(values: np.ndarray, seed: int = 0) -> dict[str, float]:
    """{"value", "low", "high"}: the mean of ``values`` and its 95% bootstrap interval."""
    if len(values) == 0:
        return {"value": 0.0, "low": 0.0, "high": 0.0}
    low, high = bootstrap_interval(values, seed=seed)
    return {"value": float(np.mean(values)), "low": low, "high": high}


def paired_difference(a: np.ndarray, b: np.ndarray, binary: bool, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over the same samples, its 95% paired bootstrap interval and a paired
    test's p-value: McNemar's exact test for 0/1 values (``binary``), else Wilcoxon's
    signed-rank test. {"value", "low", "high", "p"}."""
    from scipy import stats  # imported only when needed: it is slow to import

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = bootstrap_interval(diff, n_boot, seed)
    if not diff.any():
        p = 1.0
    elif binary:  # the discordant pairs split 50:50 under the null
        wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
        p = stats.binomtest(wins, wins + losses, 0.5).pvalue
    else:
        p = stats.wilcoxon(diff).pvalue
    return {"value": float(diff.mean()), "low": low, "high": high, "p": float(p)}


def summarise(ranks: np.ndarray, metrics: tuple[str, ...] = CANDIDATE_METRICS,
              seed: int = 0) -> dict[str, dict[str, float]]:
    """{metric: {"value", "low", "high"}} for the given ranks."""
    return {metric: mean_with_interval(per_sample(ranks, metric), seed) for metric in metrics}
