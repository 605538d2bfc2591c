"""The encoder's shortlists: its top K items a user has not seen, ranked over the whole
catalogue. They are the candidates of the whole-catalogue evaluation (``--candidates
retrieved``), of ``recommend``, and of training lists mined as hard negatives.

Items the user interacted with before the target (the whole sequence so far, not only the
history window) are masked; a target the user had already seen before is therefore never
retrieved and counts as a miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llara_kit.data import PreparedData
from llara_kit.encoders.ranking import ItemScorer, rows_per_chunk, scorer_device

MISSED = np.inf  # the rank of a target outside the shortlist: every metric counts it as 0


@dataclass
class Shortlists:
    """One split's shortlists (or a subset of its samples')."""

    items: np.ndarray  # (n, K) item ids, best first
    scores: np.ndarray  # (n, K) the encoder's scores of them
    target_rank: np.ndarray  # (n,) the target's 0-based rank among all unseen items

    @property
    def retrieved(self) -> np.ndarray:
        """(n,) bool: the target is in the shortlist."""
        return self.target_rank < self.items.shape[1]


@torch.no_grad()
def shortlists(scorer: ItemScorer, data: PreparedData, split: str, size: int,
               rows: np.ndarray | None = None) -> Shortlists:
    """The top ``size`` unseen items of each sample of ``split`` (the samples ``rows``, by
    default all), scored by ``scorer`` from the sample's history window, a chunk of at most
    ``CHUNK_CELLS`` scores at a time."""
    s = data.splits[split]
    chunk, device = rows_per_chunk(data.n_items, 2048), scorer_device(scorer)
    rows = np.arange(len(s)) if rows is None else np.asarray(rows)
    seen = data.seen_before(split)
    items, scores, ranks = [], [], []
    for start in range(0, len(rows), chunk):
        idx = rows[start : start + chunk]
        history = torch.from_numpy(s.history[idx]).to(device)
        lengths = torch.from_numpy(s.lengths[idx]).to(device)
        full = scorer(history, lengths).float().cpu().clone()  # (b, n_items + 1), ours
        target = full[torch.arange(len(idx)), torch.from_numpy(s.targets[idx])]  # (b,)
        full[:, 0] = -torch.inf
        masked = torch.cat([torch.from_numpy(seen[i]) for i in idx])
        full[torch.from_numpy(np.repeat(np.arange(len(idx)), [len(seen[i]) for i in idx])),
             masked] = -torch.inf
        top = full.topk(size, dim=1)
        items.append(top.indices.numpy())
        scores.append(top.values.numpy())
        above = (full > target[:, None]).sum(1).double().numpy()  # (b,)
        target_seen = np.isneginf(full[torch.arange(len(idx)),
                                       torch.from_numpy(s.targets[idx])].numpy())
        ranks.append(np.where(target_seen, MISSED, above))
    return Shortlists(np.concatenate(items), np.concatenate(scores), np.concatenate(ranks))


def list_ranks(scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each target among its list by ``scores`` (ties: list order), ``MISSED`` where
    the list lacks it. scores, candidates: (n, K); targets: (n,) -> (n,) float."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (n, K)
    ranked = np.take_along_axis(candidates, order, axis=1)
    hit = ranked == targets[:, None]
    return np.where(hit.any(1), hit.argmax(1), MISSED).astype(np.float64)


def shuffled(items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each list in a random order: an LLM reading a best-first list would learn the order,
    not the items. (n, K) -> (n, K)."""
    return rng.permuted(items, axis=1)
