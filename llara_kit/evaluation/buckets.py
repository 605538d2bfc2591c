"""Where a method wins: paired differences broken down by the target's popularity in
training and by how many items the user had interacted with before it."""

from __future__ import annotations

import numpy as np

from llara_kit.data import PreparedData
from llara_kit.metrics import paired_difference

# Bucket edges: a value v falls in the first bucket whose edge exceeds it.
POPULARITY_EDGES = (5, 21)  # interactions with the target in training: < 5, 5-20, > 20
HISTORY_EDGES = (31, 101)  # items the user saw before the target: <= 30, 31-100, > 100


def _labels(edges: tuple[int, ...], unit: str) -> list[str]:
    low = [0, *edges]
    labels = [f"{a}-{b - 1} {unit}" for a, b in zip(low, edges, strict=False)]
    return [*labels, f"> {edges[-1] - 1} {unit}"]


NEW = "new items"  # a target held out as new (--new-items): no interaction in training


def sample_buckets(data: PreparedData, split: str) -> dict[str, tuple[list[str], list[str]]]:
    """{kind: (the bucket labels in order, each sample's label)} for the ``target
    popularity`` (new items apart, with --new-items: new, rare, warm) and ``history``
    kinds."""
    s = data.splits[split]
    counts = np.bincount(data.training_interactions(), minlength=data.n_items + 1)
    seen = np.array([len(x) for x in data.seen_before(split)])
    out = {}
    for kind, values, edges, unit in (
            ("target popularity", counts[s.targets], POPULARITY_EDGES, "interactions"),
            ("history", seen, HISTORY_EDGES, "items")):
        labels = _labels(edges, unit)
        out[kind] = labels, [labels[i] for i in np.searchsorted(edges, values, side="right")]
    if data.has_new_items:
        labels, per_sample = out["target popularity"]
        new = data.is_new[s.targets]
        out["target popularity"] = ([NEW, *labels], [NEW if n else label for n, label
                                                     in zip(new, per_sample, strict=True)])
    return out


def bucket_differences(values: dict[str, np.ndarray], against: str,
                       buckets: tuple[list[str], list[str]]) -> dict[str, dict]:
    """{bucket: {"samples": n, row: paired difference to ``against``}} of one metric's
    per-sample ``values`` ({row: (n,)}), by the buckets of ``sample_buckets``."""
    base = values[against]
    order, per_sample = buckets
    labels = np.array(per_sample[: len(base)])
    out = {}
    for bucket in order:
        where = labels == bucket
        if not where.any():
            continue
        out[bucket] = {"samples": int(where.sum())}
        for name, v in values.items():
            if name != against and len(v) == len(base):
                binary = bool(np.isin(v, (0, 1)).all() and np.isin(base, (0, 1)).all())
                out[bucket][name] = paired_difference(v[where], base[where], binary=binary)
    return out

