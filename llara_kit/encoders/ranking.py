"""Scoring item rankers on a split: over the stored candidates and over all items.

An item scorer maps a batch of histories to a score for every item id,
``(B, L) ids, (B,) lengths -> (B, n_items + 1)``; encoders are item scorers, and so is the
popularity baseline. Every method is scored on the same stored candidates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.preprocessing import MultiLabelBinarizer

from llara_kit.data import PreparedData
from llara_kit.metrics import CANDIDATE_METRICS, FULL_METRICS, summarise, target_ranks

ItemScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def all_item_scores(scorer: ItemScorer, data: PreparedData, split: str,
                    batch_size: int = 1024) -> np.ndarray:
    """(n, n_items + 1) scores of every item for each sample of ``split``."""
    s = data.splits[split]
    device = (next(scorer.parameters()).device if isinstance(scorer, torch.nn.Module)
              else torch.device("cpu"))
    out = []
    for start in range(0, len(s), batch_size):
        seq = torch.from_numpy(s.history[start : start + batch_size]).to(device)
        lengths = torch.from_numpy(s.lengths[start : start + batch_size]).to(device)
        out.append(scorer(seq, lengths).float().cpu().numpy())
    return np.concatenate(out)


def candidate_scores(scorer: ItemScorer, data: PreparedData, split: str,
                     candidates: np.ndarray) -> np.ndarray:
    """(n, C) scores of the candidates (n, C) of the first n samples of ``split``."""
    scores = all_item_scores(scorer, data, split)[: len(candidates)]
    return np.take_along_axis(scores, candidates, axis=1)


def candidate_ranks(scores: np.ndarray, data: PreparedData, split: str) -> np.ndarray:
    """Rank of the target among the stored candidates, from all-item scores."""
    s = data.splits[split]
    cand_scores = np.take_along_axis(scores, s.candidates, axis=1)  # (n, C)
    return target_ranks(cand_scores, s.target_positions())


def full_ranks(scores: np.ndarray, data: PreparedData, split: str) -> np.ndarray:
    """Rank of the target among all items (padding excluded)."""
    s = data.splits[split]
    return target_ranks(scores[:, 1:], s.targets - 1)


def score_item_scorer(scorer: ItemScorer, data: PreparedData, split: str = "test",
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Candidate metrics (HR@1, HR@5, NDCG@5, NDCG@10, MRR) and full-ranking HR@10, NDCG@10,
    each as {"value", "low", "high"} with a 95% bootstrap interval."""
    scores = all_item_scores(scorer, data, split)
    metrics = summarise(candidate_ranks(scores, data, split), CANDIDATE_METRICS, seed)
    full = summarise(full_ranks(scores, data, split), FULL_METRICS, seed)
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


def content_scorer(vectors: np.ndarray, centre: bool = True) -> ItemScorer:
    """Scores each item by the cosine of its vector with the mean of the history's vectors
    (vectors: (n_items + 1, D), each item's text read by the frozen LLM, or its attributes
    as a multi-hot row); ``centre`` first removes the mean over the items (the component all
    LLM vectors share). Needs no interaction: it scores new items as it does any other."""
    v = vectors[1:].astype(np.float32)
    if centre:
        v = v - v.mean(axis=0)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    table = torch.zeros(len(vectors), v.shape[1])
    table[1:] = torch.from_numpy(v / np.where(norms > 0, norms, 1.0))

    def scorer(seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        user = table[seq.cpu()].sum(1) / lengths.cpu().clamp(min=1)[:, None]  # (B, D); 0 pads
        scores = user @ table.T  # (B, n_items + 1)
        scores[:, 0] = float("-inf")
        return scores

    return scorer


def attribute_vectors(attributes: list[list[str]]) -> np.ndarray:
    """(n_items + 1, A) multi-hot rows of the items' attributes (genres, tags)."""
    return MultiLabelBinarizer(sparse_output=False).fit_transform(attributes).astype(np.float32)
