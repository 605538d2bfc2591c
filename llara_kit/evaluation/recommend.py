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


RANKERS = ("auto", "encoder", "llm")  # what a request may ask to rank its candidates


@dataclass
class Recommendation:
    item: str  # raw item id as in the data set
    title: str
    score: float  # the second stage's score (see ``Recommender.stage``); higher wins
    new: bool = False  # held out as new by the run's data: scored from its text


@dataclass
class Query:
    """One request, checked (``Recommender.query``): what ``Recommender.answer`` ranks."""

    history: list[int]  # item ids, oldest first, cut to the run's history length
    seen: list[int]  # every history item given: not shortlisted when ``exclude_seen``
    candidates: list[int] | None  # None: the encoder's shortlist of ``size`` items
    size: int  # how many candidates are ranked
    top_k: int
    exclude_seen: bool
    ranker: str  # one of RANKERS
    notes: list[str]  # what was changed in the request, for the caller


@dataclass
class Answer:
    items: list[Recommendation]  # the top_k, best first, by ``stage``
    encoder_items: list[Recommendation]  # the top_k of the same candidates by the encoder
    stage: str  # what ranked ``items``: "llm", "fusion" or "encoder"
    notes: list[str]


class Recommender:
    """Ranks candidates for a history given as titles or raw item ids."""

    def __init__(self, run: Run):
        self.run = run
        self.hybrid = run.hybrid
        self.fusion = chosen_lambda(run.path)
        self.stage = second_stage(self.fusion)  # what ranks the candidates, for the user
        data = run.data
        self._by_raw = {raw: i for i, raw in enumerate(data.raw_item_ids) if i}
        self._normalised = [normalise(t) for t in data.titles]  # by item id; 0: padding
        self._by_title: dict[str, int] = {}  # titles as the run shows them, and with the year
        for i, key in enumerate(self._normalised[1:], start=1):
            self._by_title.setdefault(key, i)
        for i, (title, year) in enumerate(zip(data.titles, data.years, strict=True)):
            if year:
                self._by_title.setdefault(normalise(f"{title} ({year})"), i)

    @classmethod
    def from_run(cls, path: str | Path, device: str = "auto") -> Recommender:
        return cls(load_run(Path(path), device=device))

    def item_id(self, ref: str | int) -> int:
        """An item by raw id or title (also "Title (year)"); an unknown one gets the closest
        titles in the message."""
        ref = str(ref).strip()
        if ref in self._by_raw:
            return self._by_raw[ref]
        if normalise(ref) in self._by_title:
            return self._by_title[normalise(ref)]
        close = difflib.get_close_matches(ref, self.run.data.titles[1:], n=3, cutoff=0.5)
        hint = f" Closest titles: {'; '.join(close)}." if close else ""
        raise LlaraKitError(f"No item with id or title {ref!r}.{hint}")

    def search(self, text: str, limit: int) -> list[int]:
        """Items whose title holds ``text`` (case, accents and punctuation ignored): titles
        that start with it first, then shorter titles first."""
        key = normalise(text)
        if not key:
            return []
        found = sorted((not t.startswith(key), len(t), i)
                       for i, t in enumerate(self._normalised) if i and key in t)
        return [i for *_, i in found[:limit]]

    def recommend(self, history: list[str | int], candidates: list[str | int] | None = None,
                  top_k: int = 10) -> list[Recommendation]:
        """Rank ``candidates`` (default: the encoder's shortlist of unseen items) by the
        second stage (``self.stage``)."""
        return self.answer([self.query(history, candidates, top_k)])[0].items

    def query(self, history: list[str | int], candidates: list[str | int] | None = None,
              top_k: int = 10, exclude_seen: bool = True, ranker: str = "auto") -> Query:
        """A request checked against the run; bad input raises one sentence
        (``LlaraKitError``)."""
        data = self.run.data
        if ranker not in RANKERS:
            raise LlaraKitError(f"ranker={ranker!r}: use one of {', '.join(RANKERS)}.")
        if not history:
            raise LlaraKitError("Give at least one history item.")
        seen = [self.item_id(h) for h in history]
        seen_set, limit, notes = set(seen), data.settings.history, []
        if len(seen) > limit:
            notes.append(f"The history has {len(seen)} items; the run reads the last {limit}, "
                         "so the older ones were left out.")
        cands = None
        if candidates:
            given = dict.fromkeys(self.item_id(c) for c in candidates)  # in order, once
            cands = [c for c in given if not (exclude_seen and c in seen_set)]
            if not cands:
                raise LlaraKitError("Every candidate is in the history; give unseen candidates "
                                    "or set exclude_seen to false.")
            size = len(cands)
        else:
            unseen = data.n_items - (len(seen_set) if exclude_seen else 0)
            size = min(data.settings.candidates, unseen)
            if size < 1:
                raise LlaraKitError("The history holds every item: nothing is left to "
                                    "recommend; set exclude_seen to false.")
        if not isinstance(top_k, int) or not 1 <= top_k <= size:
            raise LlaraKitError(f"top_k={top_k!r} must lie between 1 and {size}, the number of "
                                "candidates ranked.")
        return Query(seen[-limit:], seen, cands, size, top_k, exclude_seen, ranker, notes)

    def stage_of(self, ranker: str) -> str:
        """What ranks a query's candidates: "llm", "fusion" or "encoder"."""
        if ranker == "auto":
            return {None: "llm", "0": "llm", "inf": "encoder"}.get(self.fusion, "fusion")
        return ranker

    @torch.no_grad()
    def answer(self, queries: list[Query]) -> list[Answer]:
        """Answers to checked queries, with one encoder call for all of them and one LLM
        forward per number of candidates: the same rankings as one query at a time."""
        encoder_scores = self.encoder_scores([q.history for q in queries])  # (B, n_items + 1)
        cands = []
        for q, scores in zip(queries, encoder_scores, strict=True):
            if q.candidates is not None:
                cands.append(q.candidates)
                continue
            masked = scores.clone()
            masked[[0, *(q.seen if q.exclude_seen else [])]] = float("-inf")
            cands.append(masked.topk(q.size).indices.tolist())
        # (C,) each: the encoder's scores of each query's candidates
        base = [scores[c].numpy() for scores, c in zip(encoder_scores, cands, strict=True)]
        stages = [self.stage_of(q.ranker) for q in queries]
        final = list(base)
        for rows in _groups([i for i, s in enumerate(stages) if s != "encoder"], cands):
            llm = self._llm_scores([queries[i].history for i in rows], [cands[i] for i in rows],
                                   np.stack([base[i] for i in rows]))  # (b, C)
            for j, i in enumerate(rows):
                final[i] = llm[j] if stages[i] == "llm" else fuse(
                    llm[j:j + 1], base[i][None], float(self.fusion))[0]
        return [Answer(self._top(cands[i], final[i], q.top_k),
                       self._top(cands[i], base[i], q.top_k), stages[i], q.notes)
                for i, q in enumerate(queries)]

    def _llm_scores(self, histories: list[list[int]], cands: list[list[int]],
                    base: np.ndarray) -> np.ndarray:
        """The LLM's (b, C) scores of ``cands`` after ``histories``, ``base`` (b, C) the
        encoder's."""
        run, data = self.run, self.run.data
        prompts = [run.template.render(data.item_texts, h, c, self.hybrid)
                   for h, c in zip(histories, cands, strict=True)]
        hist, lengths = _padded(histories)
        cold, content = candidate_signals(run.model.signals, hist.numpy(), lengths.numpy(),
                                          np.array(cands))
        signals = {} if cold is None else {"cold": torch.from_numpy(cold),
                                           "content": torch.from_numpy(content)}
        with scoring_autocast(run.model, run.config.precision):
            return run.model.eval().objective.score(
                run.model, prompts, [[data.titles[c] for c in cs] for cs in cands],
                torch.from_numpy(base), **signals).float().numpy()

    def _top(self, cands: list[int], scores: np.ndarray, k: int) -> list[Recommendation]:
        data = self.run.data
        order = np.argsort(-scores, kind="stable")[:k]
        return [Recommendation(data.raw_item_ids[cands[i]], data.titles[cands[i]],
                               float(scores[i]), bool(data.is_new[cands[i]])) for i in order]

    @torch.no_grad()
    def encoder_scores(self, histories: list[list[int]]) -> torch.Tensor:
        """The encoder's score of every item after each of the ``histories`` (item ids,
        oldest first): (B, n_items + 1) on the CPU, padding at -inf."""
        encoder = self.run.model.encoder
        device = next(encoder.parameters()).device
        seq, lengths = _padded(histories)  # (B, L), (B,)
        return encoder(seq.to(device), lengths.to(device)).float().cpu()


def _padded(histories: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-aligned (B, L) item ids padded with 0, and the (B,) lengths."""
    seq = torch.zeros(len(histories), max(map(len, histories)), dtype=torch.long)
    for row, h in zip(seq, histories, strict=True):
        row[:len(h)] = torch.tensor(h)
    return seq, torch.tensor([len(h) for h in histories])


def _groups(rows: list[int], cands: list[list[int]]) -> list[list[int]]:
    """``rows`` grouped by their number of candidates (one LLM forward each)."""
    by_size: dict[int, list[int]] = {}
    for i in rows:
        by_size.setdefault(len(cands[i]), []).append(i)
    return list(by_size.values())
