"""Scoring item rankers on a split: over the stored candidates and over all items.

An item scorer maps a batch of histories to a score for every item id,
``(B, L) ids, (B,) lengths -> (B, n_items + 1)``; encoders are item scorers, and so are the
popularity and content baselines. A scorer with ``score_items(seq, lengths, items)`` (encoders,
``ContentScorer``) also scores listed items alone, ``(B, K) -> (B, K)``, which scoring on
candidates uses. Every method is scored on the same stored candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from sklearn.preprocessing import MultiLabelBinarizer

from llara_kit.data import PreparedData
from llara_kit.metrics import CANDIDATE_METRICS, FULL_METRICS, summarise, target_ranks

ItemScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# At most this many (samples x items) scores at once (64 MB of float32): whole-catalogue work
# holds a few samples' scores at a time, never a (samples x items) array.
CHUNK_CELLS = 1 << 24


def rows_per_chunk(n_items: int, most: int) -> int:
    """How many samples' scores of every item fit in ``CHUNK_CELLS`` (at most ``most``)."""
    return max(1, min(most, CHUNK_CELLS // (n_items + 1)))


def scorer_device(scorer: ItemScorer) -> torch.device:
    """Where ``scorer`` takes its inputs: a module's device, else the CPU."""
    return (next(scorer.parameters()).device if isinstance(scorer, torch.nn.Module)
            else torch.device("cpu"))


@torch.no_grad()
def score_chunks(scorer: ItemScorer, data: PreparedData, split: str, n: int | None = None
                 ) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, their (b, n_items + 1) scores of every item) for the first ``n`` samples of
    ``split`` (all by default), a chunk of at most ``CHUNK_CELLS`` scores (and 1,024 samples)
    at a time."""
    s = data.splits[split]
    n = len(s) if n is None else n
    size, device = rows_per_chunk(data.n_items, 1024), scorer_device(scorer)
    for start in range(0, n, size):
        rows = slice(start, min(start + size, n))
        seq = torch.from_numpy(s.history[rows]).to(device)
        lengths = torch.from_numpy(s.lengths[rows]).to(device)
        yield rows, scorer(seq, lengths).float().cpu().numpy()


def all_item_scores(scorer: ItemScorer, data: PreparedData, split: str) -> np.ndarray:
    """(n, n_items + 1) scores of every item for each sample of ``split``: for small
    catalogues only (benchmarks on ML-100K, tests); the library works chunk by chunk."""
    return np.concatenate([scores for _, scores in score_chunks(scorer, data, split)])


@torch.no_grad()
def candidate_scores(scorer: ItemScorer, data: PreparedData, split: str,
                     candidates: np.ndarray) -> np.ndarray:
    """Scores of ``candidates``, lists of the first n samples of ``split``: (n, C) -> (n, C),
    or (S, n, C) -> (S, n, C) for S sets of lists (each sample scored once). A scorer with
    ``score_items`` (every encoder) scores the listed items alone, so the cost does not grow
    with the catalogue; another scorer's scores of every item are taken a chunk at a time."""
    if not hasattr(scorer, "score_items"):
        return _taken_scores(scorer, data, split, candidates)
    out = np.empty(candidates.shape, dtype=np.float32)
    s, device = data.splits[split], scorer_device(scorer)
    n, width = candidates.shape[-2:]
    lists = candidates.reshape(-1, n, width)  # (S, n, C)
    for start in range(0, n, 1024):
        rows = slice(start, min(start + 1024, n))
        items = torch.from_numpy(np.concatenate(lists[:, rows], axis=1)).to(device)  # (b, S*C)
        scores = scorer.score_items(torch.from_numpy(s.history[rows]).to(device),
                                    torch.from_numpy(s.lengths[rows]).to(device), items)
        scores = scores.float().cpu().numpy().reshape(items.shape[0], -1, width)  # (b, S, C)
        out.reshape(-1, n, width)[:, rows] = scores.transpose(1, 0, 2)
    return out


def _taken_scores(scorer: ItemScorer, data: PreparedData, split: str,
                  candidates: np.ndarray) -> np.ndarray:
    """``candidate_scores`` for a scorer of every item only, taking its columns."""
    out = np.empty(candidates.shape, dtype=np.float32)
    n = candidates.shape[-2]
    for rows, scores in score_chunks(scorer, data, split, n):  # (b, n_items + 1)
        lists = candidates[..., rows, :]  # (..., b, C)
        at = np.arange(lists.shape[-2]).reshape((1,) * (lists.ndim - 2) + (-1, 1))
        out[..., rows, :] = scores[at, lists]
    return out


def candidate_ranks(scorer: ItemScorer, data: PreparedData, split: str) -> np.ndarray:
    """(n,) rank of each target among the stored candidates of ``split``."""
    s = data.splits[split]
    return target_ranks(candidate_scores(scorer, data, split, s.candidates),
                        s.target_positions())


def split_ranks(scorer: ItemScorer, data: PreparedData, split: str, n: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(n,) ranks of each sample's target among its stored candidates and (n,) among all items
    (padding excluded; ties: the lower id first), for the first ``n`` samples of ``split``
    (all by default), from one pass over them."""
    s = data.splits[split]
    n = len(s) if n is None else n
    among_candidates = np.empty(n, dtype=np.int64)
    among_all = np.empty(n, dtype=np.int64)
    positions = s.target_positions()
    for rows, scores in score_chunks(scorer, data, split, n):
        listed = np.take_along_axis(scores, s.candidates[rows], axis=1)  # (b, C)
        among_candidates[rows] = target_ranks(listed, positions[rows])
        among_all[rows] = target_ranks(scores[:, 1:], s.targets[rows] - 1)
    return among_candidates, among_all


def score_item_scorer(scorer: ItemScorer, data: PreparedData, split: str = "test",
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Candidate metrics (HR@1, HR@5, NDCG@5, NDCG@10, MRR) and full-ranking HR@10, NDCG@10,
    each as {"value", "low", "high"} with a 95% bootstrap interval."""
    among_candidates, among_all = split_ranks(scorer, data, split)
    metrics = summarise(among_candidates, CANDIDATE_METRICS, seed)
    full = summarise(among_all, FULL_METRICS, seed)
    return metrics | {f"full {name}": value for name, value in full.items()}


def popularity_scorer(data: PreparedData) -> ItemScorer:
    """Scores each item by its interaction count in training (a strong baseline)."""
    counts = np.bincount(data.training_interactions(), minlength=data.n_items + 1)
    counts = counts.astype(np.float32)
    counts[0] = -np.inf
    table = torch.from_numpy(counts)

    def scorer(seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return table.expand(seq.shape[0], -1)

    return scorer


class ContentScorer:
    """Scores each item by the cosine of its vector with the mean of the history's vectors
    (vectors: (n_items + 1, D), each item's text read by the frozen LLM, or its attributes
    as a multi-hot row); ``centre`` first removes the mean over the items (the component all
    LLM vectors share). Needs no interaction: it scores new items as it does any other."""

    def __init__(self, vectors: np.ndarray, centre: bool = True):
        v = vectors[1:].astype(np.float32)
        if centre:
            v = v - v.mean(axis=0)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.table = torch.zeros(len(vectors), v.shape[1])  # (n_items + 1, D), row 0 padding
        self.table[1:] = torch.from_numpy(v / np.where(norms > 0, norms, 1.0))

    def _user(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L), (B,) -> (B, D): the history's mean vector (0 pads)."""
        return self.table[seq.cpu()].sum(1) / lengths.cpu().clamp(min=1)[:, None]

    def __call__(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = self._user(seq, lengths) @ self.table.T  # (B, n_items + 1)
        scores[:, 0] = float("-inf")
        return scores

    def score_items(self, seq: torch.Tensor, lengths: torch.Tensor, items: torch.Tensor
                    ) -> torch.Tensor:
        """(B, L), (B,), (B, K) -> (B, K): the listed items' columns of ``__call__``."""
        items = items.cpu()
        scores = (self.table[items] * self._user(seq, lengths)[:, None, :]).sum(-1)
        return scores.masked_fill(items == 0, float("-inf"))


def attribute_vectors(attributes: list[list[str]]) -> np.ndarray:
    """(n_items + 1, A) multi-hot rows of the items' attributes (genres, tags)."""
    return MultiLabelBinarizer(sparse_output=False).fit_transform(attributes).astype(np.float32)
