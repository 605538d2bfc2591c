"""Recommending with a trained run: ``Recommender.from_run(path).recommend(history)``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llara_kit.errors import LlaraKitError
from llara_kit.evaluate import normalise, uses_hybrid
from llara_kit.run import LoadedRun, load_run


@dataclass
class Recommendation:
    item: str  # raw item id as in the data set
    title: str
    score: float  # the run's objective's score (title: mean token log-likelihood); higher wins


class Recommender:
    """Ranks candidates for a history given as titles or raw item ids."""

    def __init__(self, run: LoadedRun):
        self.run = run
        self.hybrid = uses_hybrid(run)
        data = run.data
        self._by_raw = {raw: i for i, raw in enumerate(data.raw_item_ids) if i}
        self._by_title: dict[str, int] = {}
        for i, title in enumerate(data.titles[1:], start=1):
            self._by_title.setdefault(normalise(title), i)

    @classmethod
    def from_run(cls, path: str | Path, device: str = "auto") -> Recommender:
        return cls(load_run(Path(path), device=device))

    def item_id(self, ref: str | int) -> int:
        """An item by raw id or title; an unknown one gets the closest titles in the message."""
        ref = str(ref).strip()
        if ref in self._by_raw:
            return self._by_raw[ref]
        if normalise(ref) in self._by_title:
            return self._by_title[normalise(ref)]
        close = difflib.get_close_matches(ref, self.run.data.titles[1:], n=3, cutoff=0.5)
        hint = f" Closest titles: {'; '.join(close)}." if close else ""
        raise LlaraKitError(f"No item with id or title {ref!r}.{hint}")

    def recommend(self, history: list[str | int], candidates: list[str | int] | None = None,
                  top_k: int = 10) -> list[Recommendation]:
        """Rank ``candidates`` (default: the encoder's shortlist of unseen items) by the LLM."""
        if not history:
            raise LlaraKitError("Give at least one history item.")
        data, run = self.run.data, self.run
        hist = [self.item_id(h) for h in history][-data.settings.history :]
        if candidates:
            cands = list(dict.fromkeys(self.item_id(c) for c in candidates))
        else:
            cands = self.shortlist(hist, data.settings.candidates)
        prompt = run.template.render(data.titles, hist, cands, self.hybrid)
        scores = run.model.eval().objective.score(run.model, run.backbone, [prompt],
                                                  [[data.titles[c] for c in cands]])[0].numpy()
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [Recommendation(data.raw_item_ids[cands[i]], data.titles[cands[i]],
                               float(scores[i])) for i in order]

    @torch.no_grad()
    def shortlist(self, history: list[int], size: int) -> list[int]:
        """The encoder's top ``size`` items the user has not seen, for the LLM to rank."""
        encoder = self.run.model.encoder
        device = next(encoder.parameters()).device
        seq = torch.tensor([history], device=device)
        scores = encoder(seq, torch.tensor([len(history)], device=device))[0]  # (n_items + 1,)
        scores[history] = float("-inf")
        return scores.topk(size).indices.tolist()
