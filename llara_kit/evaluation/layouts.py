"""Candidate layouts: a split's stored candidates under other orders and other negative draws,
and the metrics over all of them.

A layout is one (n, C) candidate matrix. Layout 0 is the stored first draw in its stored
order; ``permutations`` adds seeded reorderings of each draw, ``draws`` (a data setting) adds
independently drawn negative sets. An LLM sees the list as text, so its scores may depend on
where the target stands (position bias); an item scorer (encoder, popularity) scores items,
not lists, and is unaffected by the order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llara_kit.data.prepared import Split, target_positions
from llara_kit.errors import LlaraKitError
from llara_kit.metrics import CANDIDATE_METRICS, mean_with_interval, per_sample, target_ranks

_PERMUTATION_STREAM = 11  # the seed's generator family: one stream per use (see protocol)


@dataclass(frozen=True)
class Layout:
    draw: int  # which stored negative set
    order: int  # 0 = the stored order, k > 0 = the k-th seeded permutation
    candidates: np.ndarray  # (n, C) item ids

    def target_positions(self, targets: np.ndarray) -> np.ndarray:
        """(n,) column of each sample's target."""
        return target_positions(self.candidates, targets)


def layouts(split: Split, permutations: int = 1, seed: int = 0,
            limit: int | None = None) -> list[Layout]:
    """Every stored draw under ``permutations`` orders each, the stored order first."""
    if permutations < 1:
        raise LlaraKitError(f"--permutations {permutations} must be at least 1 (the stored order).")
    out = []
    for d, candidates in enumerate(split.candidate_draws()):
        candidates = candidates[:limit]
        out.append(Layout(d, 0, candidates))
        for k in range(1, permutations):
            rng = np.random.default_rng([seed, _PERMUTATION_STREAM, d, k])
            out.append(Layout(d, k, rng.permuted(candidates, axis=1)))
    return out


def layout_summary(scores: np.ndarray, target_pos: np.ndarray, draws: np.ndarray
                   ) -> dict:
    """Metrics over layouts from their scores.

    scores: (L, n, C) candidate scores per layout; target_pos: (L, n); draws: (L,) the draw of
    each layout. Returns ``metrics`` (each sample's metric averaged over its layouts, then the
    mean over samples with a 95% interval), ``ranks`` (L, n), ``by_position`` (HR@1 by the
    target's position and the share of top-1 picks at each position, pooled over layouts),
    ``position_bias`` and the HR@1 ``spread`` over orders and over draws.
    """
    from scipy import stats

    L, _, C = scores.shape
    ranks = np.stack([target_ranks(scores[i], target_pos[i]) for i in range(L)])  # (L, n)
    metrics = {m: mean_with_interval(per_sample(ranks, m).mean(axis=0)) for m in CANDIDATE_METRICS}
    hits = ranks == 0  # (L, n)
    at = np.bincount(target_pos.ravel(), minlength=C)  # (C,) samples with the target there
    hit_at = np.bincount(target_pos.ravel(), weights=hits.ravel(), minlength=C)
    top1 = np.argmax(scores, axis=2)  # (L, n) position of each top-1 pick (first on ties)
    picked = np.bincount(top1.ravel(), minlength=C)
    hr_at = np.where(at > 0, hit_at / np.maximum(at, 1), np.nan)
    observed = np.stack([hit_at, at - hit_at])[:, at > 0]  # (2, positions seen)
    # chi-square tests: hits independent of position; top-1 picks uniform over positions
    hit_p = (stats.chi2_contingency(observed).pvalue
             if observed.shape[1] > 1 and observed.sum(axis=1).all() else 1.0)
    pick_p = stats.chisquare(picked).pvalue if picked.sum() else 1.0
    seen = hr_at[at > 0]
    return {
        "metrics": metrics,
        "ranks": ranks,
        "by_position": {"samples": at.tolist(), "HR@1": [_round(x) for x in hr_at],
                        "top1_share": [_round(x) for x in picked / picked.sum()]},
        "position_bias": {"HR@1_spread": _round(seen.max() - seen.min()),
                          "HR@1_p": _round(hit_p), "top1_p": _round(pick_p)},
        "spread": _spread(hits.mean(axis=1), draws),
    }


def _spread(per_layout: np.ndarray, draws: np.ndarray) -> dict:
    """HR@1 over orders (per draw: each order's value, and the widest max - min) and over draws
    (each draw's mean over its orders, and their max - min). per_layout, draws: (L,)."""
    by_draw = [per_layout[draws == d] for d in np.unique(draws)]
    means = np.array([g.mean() for g in by_draw])
    return {
        "orders": {"HR@1": [[_round(x) for x in g] for g in by_draw],
                   "range": _round(max(g.max() - g.min() for g in by_draw))},
        "draws": {"HR@1": [_round(x) for x in means], "range": _round(means.max() - means.min())},
    }


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 5)
