"""Recommending with a trained run: ``Recommender.from_run(path).recommend(history)``.

The second stage is what the run's whole-catalogue evaluation chose on valid (the fusion
weight of ``evaluate --candidates retrieved``): the LLM's order, the LLM fused with its
encoder, or, when the LLM did not beat the encoder there with a paired 95% interval above 0,
the encoder's own order."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llara_kit.devices import scoring_autocast
from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.evaluate import normalise
from llara_kit.evaluation.fusion import fuse, fused_method
from llara_kit.model.new_items import candidate_signals
from llara_kit.run import Run, load_run
from llara_kit.run_folder import has_metrics, load_metrics


def second_stage(lam: str | None) -> str:
    """What ranks a shortlist, given the fusion weight chosen on valid (None: not chosen)."""
    if lam is None:
        return ("the LLM's order (not checked against the encoder on valid: run `llara-kit "
                "evaluate RUN --candidates retrieved`)")
    if lam == "inf":
        return ("the encoder's order: the LLM did not beat it on valid with a paired 95% "
                "interval above 0, so it is not used")
    if lam == "0":
        return "the LLM's order (it beat the encoder on valid, paired 95% interval above 0)"
    return (f"the LLM fused with the encoder (weight λ={lam}, chosen on valid, where it beat "
            "the encoder with a paired 95% interval above 0)")


def chosen_lambda(run_dir) -> str | None:
    """The fusion weight the run's whole-catalogue evaluation chose on valid, if any."""
    if not has_metrics(run_dir):
        return None
    fused = load_metrics(run_dir).get("test", {}).get(fused_method("score-retrieved"))
    return None if fused is None else fused["lambda"]


@dataclass
class Recommendation:
    item: str  # raw item id as in the data set
    title: str
    score: float  # the second stage's score (see ``Recommender.stage``); higher wins
    new: bool = False  # held out as new by the run's data: scored from its text


class Recommender:
    """Ranks candidates for a history given as titles or raw item ids."""

    def __init__(self, run: Run):
        self.run = run
        self.hybrid = run.hybrid
        self.fusion = chosen_lambda(run.path)
        self.stage = second_stage(self.fusion)  # what ranks the candidates, for the user
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
        """Rank ``candidates`` (default: the encoder's shortlist of unseen items) by the
        second stage (``self.stage``)."""
        if not history:
            raise LlaraKitError("Give at least one history item.")
        data, run = self.run.data, self.run
        seen = [self.item_id(h) for h in history]
        hist = seen[-data.settings.history :]
        encoder_scores = self.encoder_scores(hist)  # (n_items + 1,)
        if candidates:
            cands = list(dict.fromkeys(self.item_id(c) for c in candidates))
        else:
            masked = encoder_scores.clone()
            masked[[0, *seen]] = float("-inf")
            cands = masked.topk(min(data.settings.candidates, data.n_items - len(set(seen))
                                    )).indices.tolist()
        base = encoder_scores[cands].numpy()[None]  # (1, C)
        if self.fusion == "inf":
            scores = base[0]
        else:
            prompt = run.template.render(data.item_texts, hist, cands, self.hybrid)
            cold, content = candidate_signals(run.model.signals, np.array([hist]),
                                              np.array([len(hist)]), np.array([cands]))
            signals = {} if cold is None else {"cold": torch.from_numpy(cold),
                                               "content": torch.from_numpy(content)}
            with scoring_autocast(run.model, run.config.precision):
                llm = run.model.eval().objective.score(
                    run.model, [prompt], [[data.titles[c] for c in cands]],
                    torch.from_numpy(base), **signals).float().numpy()  # (1, C)
            scores = llm[0] if self.fusion is None else fuse(llm, base, float(self.fusion))[0]
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [Recommendation(data.raw_item_ids[cands[i]], data.titles[cands[i]],
                               float(scores[i]), bool(data.is_new[cands[i]])) for i in order]

    @torch.no_grad()
    def encoder_scores(self, history: list[int]) -> torch.Tensor:
        """The encoder's score of every item after ``history``: (n_items + 1,) on the CPU,
        padding at -inf."""
        encoder = self.run.model.encoder
        device = next(encoder.parameters()).device
        seq = torch.tensor([history], device=device)
        return encoder(seq, torch.tensor([len(history)], device=device))[0].float().cpu()
