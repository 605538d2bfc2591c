"""The candidate lists training samples get, and the encoder scores that go with them.

A training sample's list is either 20 random unseen items (the paper's) or the encoder's
shortlist (hard negatives: what the LLM re-ranks over the whole catalogue); ``negatives``
chooses (``mixed``: shortlists with the probability a schedule plugin gives over training,
random lists first). The encoder's score of each candidate reaches the LLM (a user-conditioned
token, the residual objective's base).

Leakage: the run's encoder was pre-trained on the very samples the LLM trains on, so its
shortlists and scores there are far sharper than at test time. With ``cross_fit`` K >= 2 the
train users are cut into K folds (scikit-learn's KFold); fold k's samples are shortlisted and
scored by an encoder pre-trained on the other folds' samples only, so training sees the
encoder as evaluation does: on targets it never trained on. The LLM's behavioural tokens keep
the run's encoder's item embeddings (the projector must read one embedding space).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.numpy import save_file
from sklearn.model_selection import KFold

from llara_kit.config import PretrainSettings, TrainConfig
from llara_kit.data import PreparedData
from llara_kit.encoders import Encoder
from llara_kit.encoders.pretrain import pretrain_encoder
from llara_kit.encoders.shortlists import Shortlists, shortlists
from llara_kit.errors import LlaraKitError
from llara_kit.model.schedules import build_schedule
from llara_kit.storage import atomic_path, cache_home, read_tensors, sha256_json
from llara_kit.version import VERSION


def user_folds(data: PreparedData, folds: int, seed: int) -> np.ndarray:
    """(n_train,) the fold of each train sample's user: users cut into ``folds`` at random."""
    users = data.splits["train"].users
    unique = np.unique(users)
    if folds > len(unique):
        raise LlaraKitError(f"cross_fit={folds} folds need at least {folds} train users; "
                            f"this data has {len(unique)}: lower cross_fit.")
    fold_of = np.zeros(unique.max() + 1, dtype=np.int64)
    for k, (_, held) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(unique)):
        fold_of[unique[held]] = k
    return fold_of[users]


@dataclass
class TrainingLists:
    """Per train sample: the encoder that shortlists and scores it, and its shortlist."""

    scorers: list[Encoder]  # the run's encoder, or one per cross-fitting fold
    fold: np.ndarray  # (n_train,) index into scorers
    mined: Shortlists | None  # (n_train, C) shortlists, best first (None: random lists only)
    negatives: str
    missing_target: str
    schedule: Callable[[float], float] | None  # mixed: shortlist share at progress in [0, 1]

    def shortlist_share(self, progress: float) -> float:
        if self.negatives == "random":
            return 0.0
        return 1.0 if self.negatives == "shortlist" else float(self.schedule(progress))

    def pool(self) -> np.ndarray:
        """Train samples a run may draw: with shortlists only and skipped misses, those
        whose target is in their shortlist."""
        n = len(self.fold)
        if self.negatives == "shortlist" and self.missing_target == "skip":
            return np.flatnonzero(self.mined.retrieved)
        return np.arange(n)

    def candidates(self, idx: np.ndarray, random_lists: np.ndarray, use_shortlist: np.ndarray,
                   targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(B, C) candidates of samples ``idx`` in a random order, and (B,) whether each is a
        shortlist: the shortlist where asked and usable (its target in it, or injected over
        its last item), else the random list ``random_lists`` (B, C)."""
        out = random_lists.copy()
        used = np.zeros(len(idx), dtype=bool)
        for r, (i, want) in enumerate(zip(idx, use_shortlist, strict=True)):
            if not want:
                continue
            items = self.mined.items[i].copy()
            if targets[r] not in items:
                if self.missing_target == "skip":
                    continue
                items[-1] = targets[r]
            out[r], used[r] = rng.permutation(items), True
        return out, used

    @torch.no_grad()
    def base_scores(self, data: PreparedData, idx: np.ndarray, candidates: np.ndarray
                    ) -> np.ndarray:
        """(B, C) each candidate's score by the encoder assigned to its sample."""
        train = data.splits["train"]
        out = np.zeros(candidates.shape, dtype=np.float32)
        for k in np.unique(self.fold[idx]):
            rows = np.flatnonzero(self.fold[idx] == k)
            scorer = self.scorers[k]
            device = next(scorer.parameters()).device
            seq = torch.from_numpy(train.history[idx[rows]]).to(device)
            lengths = torch.from_numpy(train.lengths[idx[rows]]).to(device)
            listed = torch.from_numpy(candidates[rows]).to(device)  # (b, C)
            out[rows] = scorer.score_items(seq, lengths, listed).float().cpu().numpy()
        return out

    def hit_rate(self, data: PreparedData, idx: np.ndarray, candidates: np.ndarray) -> float:
        """HR@1 of the samples' scorers on their lists ``candidates`` (n, C): how sharp the
        encoder that scores training lists is there (compare with valid and test)."""
        scores = self.base_scores(data, idx, candidates)  # (n, C)
        picked = candidates[np.arange(len(idx)), scores.argmax(1)]
        return float((picked == data.splits["train"].targets[idx]).mean())

    def recall(self) -> float | None:
        """Share of train samples whose target is in their shortlist (train-time Recall@C)."""
        return None if self.mined is None else float(self.mined.retrieved.mean())


def training_lists(cfg: TrainConfig, data: PreparedData, encoder: Encoder,
                   show_progress: bool = True) -> TrainingLists:
    """The lists and scorers of a run's training samples (see the module docstring)."""
    n = len(data.splits["train"])
    if cfg.cross_fit >= 2:
        fold = user_folds(data, cfg.cross_fit, cfg.seed)
        scorers = [
            pretrain_encoder(cfg.encoder, data, cfg.encoder_options,
                             PretrainSettings(seed=cfg.seed), rows=np.flatnonzero(fold != k),
                             label=f"{cfg.encoder} without fold {k + 1}/{cfg.cross_fit}",
                             show_progress=show_progress, device=cfg.device).encoder
            for k in range(cfg.cross_fit)
        ]
    else:
        fold, scorers = np.zeros(n, dtype=np.int64), [encoder]
    mined = (None if cfg.negatives == "random"
             else mined_shortlists(data, scorers, fold, data.settings.candidates))
    schedule = build_schedule(cfg.negatives_schedule) if cfg.negatives == "mixed" else None
    return TrainingLists(scorers, fold, mined, cfg.negatives, cfg.missing_target, schedule)


def mined_shortlists(data: PreparedData, scorers: list[Encoder], fold: np.ndarray, size: int
                     ) -> Shortlists:
    """Every train sample's shortlist by its fold's scorer, cached by the data's hash and the
    scorers' weights."""
    weights = [hashlib.sha256(b"".join(v.detach().cpu().contiguous().numpy().tobytes()
                                       for v in s.state_dict().values())).hexdigest()
               for s in scorers]
    key = sha256_json({"data": data.hash, "scorers": weights, "fold": fold.tolist(),
                       "size": size, "version": 1})
    path = cache_home() / "shortlists" / f"{key[:24]}.safetensors"
    if path.is_file():
        stored = read_tensors(str(path), "np")
        return Shortlists(stored["items"], stored["scores"], stored["target_rank"])
    parts = [(rows, shortlists(scorer.eval(), data, "train", size, rows))
             for k, scorer in enumerate(scorers) if len(rows := np.flatnonzero(fold == k))]
    items = np.zeros((len(fold), size), dtype=np.int64)
    scores = np.zeros((len(fold), size), dtype=np.float32)
    ranks = np.zeros(len(fold), dtype=np.float64)
    for rows, part in parts:
        items[rows], scores[rows], ranks[rows] = part.items, part.scores, part.target_rank
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"items": items, "scores": scores, "target_rank": ranks}, str(tmp),
                  metadata={"llara_kit_version": VERSION})
    return Shortlists(items, scores, ranks)
