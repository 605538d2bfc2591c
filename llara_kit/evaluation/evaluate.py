"""Evaluating a LLaRA run on the stored valid/test candidates, in three modes.

- ``score``: rank the candidates by the run's objective (``title``: the length-normalised
  log-likelihood of each title after the prompt; ``head``: the score head, one forward pass).
  Every answer is valid by construction.
- ``generate``: the paper's protocol: greedy generation, first line, exact match (after
  normalisation) against the candidate titles. ``HR@1`` counts an invalid answer as a miss;
  ``HR@1 (valid only)`` divides by the valid answers, as the reference code's ``test_hr`` did.
- ``constrained``: greedy generation restricted to the candidate titles by a prefix tree.

``evaluate`` returns an ``Evaluation`` (metrics, layout details, per-sample rows and the
LLM's scores) that the caller uses in memory (the CLI's tables, fusion); it is also recorded
in the run folder's ``metrics.json`` (keyed by split and method) and
``predictions-<split>-<method>.jsonl`` (see ``llara_kit.run_folder``), which later commands
read (``stored_evaluation``, ``compare``, ``report``).
"""

from __future__ import annotations

import copy
import re
import unicodedata
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llara_kit.config import CANDIDATE_SOURCES, MODES
from llara_kit.data.settings import EVALUATION_SPLITS
from llara_kit.devices import scoring_autocast
from llara_kit.distributed import gather_rows, main_writes, process_share, shard
from llara_kit.encoders import Encoder
from llara_kit.encoders.ranking import candidate_scores
from llara_kit.encoders.shortlists import list_ranks, shortlists, shuffled
from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.layouts import Layout, layout_summary, layouts
from llara_kit.metrics import mean_with_interval, retrieved_metrics, summarise
from llara_kit.model.inference import greedy_answers
from llara_kit.model.new_items import candidate_signals
from llara_kit.model.prompts import Prompt
from llara_kit.progress import Progress
from llara_kit.run import Run
from llara_kit.run_folder import evaluating, load_metrics, read_predictions, record_metrics

_RETRIEVED_ORDER = 12  # the seed's generator family: the order shortlists are shown in


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away, for exact title matching."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


@dataclass
class Evaluation:
    """One method scored on one split: what ``evaluate`` returns and records."""

    split: str
    method: str
    metrics: dict[str, dict[str, float]]  # metric -> {value, low, high}
    # mode, hybrid, samples; in score mode orders, draws, by_position, position_bias,
    # spread and versus_encoder; over the catalogue candidates and shortlist
    info: dict[str, Any]
    rows: list[dict[str, Any]]  # one per sample, as in predictions-<split>-<method>.jsonl
    candidates: np.ndarray  # (n, C) the lists ranked (first layout)
    targets: np.ndarray  # (n,)
    scores: np.ndarray | None = None  # (n, C) the run's scores of them (score mode)

    @property
    def n_layouts(self) -> int:
        """How many candidate orders x negative draws the metrics average over."""
        return self.info.get("orders", 1) * self.info.get("draws", 1)


def _recorded_scores(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """(n, C) the scores as the prediction rows record them (rounded), so that what uses
    them in memory (fusion) sees what a later command reads back; None without scores."""
    if not rows or "scores" not in rows[0]:
        return None
    return np.array([r["scores"] for r in rows], dtype=np.float64)


def stored_evaluation(run: Run, split: str, method: str) -> Evaluation:
    """An evaluation an earlier command recorded in the run folder (its scores, where the
    method has them)."""
    rows = read_predictions(run.path, split, method)
    if not rows:
        raise LlaraKitError(f"Run {str(run.path)!r} has no {method} predictions on {split}; "
                            f"run `llara-kit evaluate {run.path} --split {split}` first.")
    recorded = dict(load_metrics(run.path)[split][method])
    metrics = recorded.pop("metrics")
    recorded.pop("predictions_sha256", None)
    return Evaluation(split, method, metrics, recorded, rows,
                      np.array([r["candidates"] for r in rows]),
                      np.array([r["target"] for r in rows]), _recorded_scores(rows))


def split_prompts(run: Run, split: str, hybrid: bool, limit: int | None = None,
                  candidates: np.ndarray | None = None
                  ) -> tuple[list[Prompt], np.ndarray, np.ndarray]:
    """Prompts (first phrasing), candidates (n, C) and targets (n,) of a stored split; the
    stored candidates unless others are given (another order or draw, (n, C))."""
    s = run.data.splits[split]
    candidates = s.candidates if candidates is None else candidates
    n = len(candidates) if limit is None else min(limit, len(candidates))
    candidates = candidates[:n]
    prompts = [
        run.template.render(run.data.item_texts, s.history_of(i), candidates[i].tolist(),
                            hybrid)
        for i in range(n)
    ]
    return prompts, candidates, s.targets[:n]


def _batches(n: int, size: int, label: str, show: bool):
    with Progress(label, n, "users", show=show) as progress:
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))
            progress.advance(min(size, n - start))


def _candidate_titles(run: Run, candidates: np.ndarray) -> list[list[str]]:
    return [[run.data.titles[c] for c in row] for row in candidates]


def llm_scores(run: Run, split: str, layout: Layout, hybrid: bool, batch_size: int,
               label: str, show_progress: bool) -> np.ndarray:
    """The run's objective's scores of one layout's candidates: (n, C)."""
    prompts, candidates, _ = split_prompts(run, split, hybrid, candidates=layout.candidates)
    rank, world = process_share()  # launched processes score a slice of the users each
    mine = shard(np.arange(len(prompts)), rank, world)
    prompts, candidates = [prompts[i] for i in mine], candidates[mine]
    titles = _candidate_titles(run, candidates)
    base = candidate_scores(_cpu_encoder(run), run.data, split, layout.candidates)[mine]
    s = run.data.splits[split]
    cold, content = candidate_signals(run.model.signals, s.history[mine], s.lengths[mine],
                                      candidates)
    objective = run.model.objective

    def signals(sl: slice) -> dict[str, torch.Tensor]:
        return {} if cold is None else {"cold": torch.from_numpy(cold[sl]),
                                        "content": torch.from_numpy(content[sl])}

    with scoring_autocast(run.model, run.config.precision):
        scores = [objective.score(run.model, prompts[sl], titles[sl],
                                  torch.from_numpy(base[sl]), **signals(sl)).float().numpy()
                  for sl in _batches(len(prompts), batch_size, label,
                                     show_progress and rank == 0)]
    return gather_rows(np.concatenate(scores) if scores
                       else np.zeros(candidates.shape, dtype=np.float32))


def generated_answers(run: Run, prompts: list[Prompt], constrain: list[list[str]] | None,
                      batch_size: int, label: str, show_progress: bool) -> list[str]:
    """The run's greedy answer to each prompt (among ``constrain``'s titles if given), each
    launched process generating a slice of them."""
    rank, world = process_share()
    mine = shard(np.arange(len(prompts)), rank, world)
    answers: list[str] = []
    with scoring_autocast(run.model, run.config.precision):
        for sl in _batches(len(mine), batch_size, label, show_progress and rank == 0):
            batch = mine[sl]
            answers += greedy_answers(run.model, [prompts[i] for i in batch],
                                      [constrain[i] for i in batch] if constrain else None)
    return gather_rows(np.array(answers, dtype=object)).tolist()


def _cpu_encoder(run: Run) -> Encoder:
    """The run's encoder on the CPU (its model may sit on a GPU), for whole-split scoring."""
    return copy.deepcopy(run.model.encoder).cpu()


def versus_encoder(run: Run, split: str, candidates: np.ndarray, scores: np.ndarray
                   ) -> dict[str, Any]:
    """Does the run do more than copy its encoder's order? The share of samples whose top-1
    differs from the encoder's, and among them how often each is right. candidates,
    scores: (n, C)."""
    encoder = candidate_scores(_cpu_encoder(run), run.data, split, candidates)  # (n, C)
    rows = np.arange(len(candidates))
    ours, theirs = candidates[rows, scores.argmax(1)], candidates[rows, encoder.argmax(1)]
    targets = run.data.splits[split].targets[: len(candidates)]
    differs = ours != theirs
    return {"top1_differs": round(float(differs.mean()), 4),
            "llm_right": int((ours[differs] == targets[differs]).sum()),
            "encoder_right": int((theirs[differs] == targets[differs]).sum())}


def _layout_label(split: str, layout: Layout, views: list[Layout]) -> str:
    parts = []
    if any(v.order for v in views):
        parts.append(f"order {layout.order + 1}/{max(v.order for v in views) + 1}")
    if any(v.draw for v in views):
        parts.append(f"draw {layout.draw + 1}/{max(v.draw for v in views) + 1}")
    return f"scoring {split}" + (f" ({', '.join(parts)})" if parts else "")


def evaluate(run: Run, split: str = "test", mode: str = "score", *, batch_size: int = 4,
             limit: int | None = None, method: str | None = None, hybrid: bool | None = None,
             permutations: int = 1, record: bool = True, show_progress: bool = True,
             candidates: str = "stored", shortlist: int = 20) -> Evaluation:
    """Evaluate ``run`` under ``method`` (default: the mode); with ``record`` the metrics and
    the predictions are also written into the run folder. ``hybrid`` defaults
    to the form the run ended training in. In score mode every stored draw is scored under
    ``permutations`` candidate orders and the metrics average over them (see layouts).
    ``candidates="retrieved"`` ranks the encoder's top ``shortlist`` unseen items instead
    (the whole-catalogue evaluation; method ``<mode>-retrieved``)."""
    with evaluating(run.path) if record else nullcontext():
        return _evaluate(run, split, mode, batch_size=batch_size, limit=limit, method=method,
                         hybrid=hybrid, permutations=permutations, record=record,
                         show_progress=show_progress, candidates=candidates,
                         shortlist=shortlist)


def _evaluate(run: Run, split: str, mode: str, *, batch_size: int, limit: int | None,
              method: str | None, hybrid: bool | None, permutations: int, record: bool,
              show_progress: bool, candidates: str, shortlist: int) -> Evaluation:
    if mode not in MODES:
        raise LlaraKitError(f"Unknown evaluation mode {mode!r}. Available: {', '.join(MODES)}.")
    if split not in run.data.splits or split == "train":
        available = [name for name in EVALUATION_SPLITS if name in run.data.splits]
        raise LlaraKitError(f"Evaluate on one of {', '.join(available)}, not {split!r}"
                            + (" (the new-item splits need data prepared with --new-items)"
                               if split in EVALUATION_SPLITS else "") + ".")
    if candidates not in CANDIDATE_SOURCES:
        raise LlaraKitError(f"Unknown candidate source {candidates!r}; use one of: "
                            f"{', '.join(CANDIDATE_SOURCES)}.")
    if candidates == "retrieved":
        return evaluate_retrieved(run, split, mode, batch_size=batch_size, limit=limit,
                                  method=method, hybrid=hybrid, permutations=permutations,
                                  record=record, show_progress=show_progress, size=shortlist)
    s = run.data.splits[split]
    if mode != "score" and (permutations > 1 or run.data.settings.draws > 1):
        raise LlaraKitError(
            f"Mode {mode!r} reads the stored order of the first draw; --permutations and "
            "--draws apply to --mode score."
        )
    hybrid = run.hybrid if hybrid is None else hybrid
    n = len(s) if limit is None else min(limit, len(s))
    stored, targets = s.candidates[:n], s.targets[:n]
    run.model.eval()
    rows = []
    info: dict[str, Any] = {"mode": mode, "hybrid": hybrid, "samples": n}
    if mode == "score":
        views = layouts(s, permutations, run.config.seed, limit)
        scores = np.stack([
            llm_scores(run, split, v, hybrid, batch_size, _layout_label(split, v, views),
                       show_progress)
            for v in views
        ])  # (L, n, C)
        summary = layout_summary(scores, np.stack([v.target_positions(targets) for v in views]),
                                 np.array([v.draw for v in views]))
        metrics = summary["metrics"]
        metrics["ValidRatio"] = {"value": 1.0, "low": 1.0, "high": 1.0}
        info |= {"orders": permutations, "draws": run.data.settings.draws,
                 **{k: summary[k] for k in ("by_position", "position_bias", "spread")},
                 "versus_encoder": versus_encoder(run, split, stored, scores[0])}
        ranks = summary["ranks"]  # (L, n); layout 0 is the stored order of the first draw
        for i in range(n):
            order = np.argsort(-scores[0, i], kind="stable")
            rows.append({"ranking": stored[i][order].tolist(), "hit": bool(ranks[0, i] == 0),
                         "scores": [round(float(x), 5) for x in scores[0, i]]})
            if len(views) > 1:
                rows[-1]["ranks"] = ranks[:, i].tolist()
    else:
        if run.config.objective != "title":
            raise LlaraKitError(
                f"Mode {mode!r} reads generated titles, but this run was trained with the "
                f"{run.config.objective!r} objective; use --mode score."
            )
        prompts = split_prompts(run, split, hybrid, limit)[0]
        cand_titles = _candidate_titles(run, stored)
        target_pos = s.target_positions()[:n]
        answers = generated_answers(run, prompts, cand_titles if mode == "constrained" else None,
                                    batch_size, f"{mode} {split}", show_progress)
        valid, hits = np.zeros(len(answers)), np.zeros(len(answers))
        for i, answer in enumerate(answers):
            first = answer.strip().split("\n")[0].strip()
            matches = [j for j, t in enumerate(cand_titles[i]) if normalise(t) == normalise(first)]
            valid[i] = len(matches) == 1
            hits[i] = valid[i] and matches[0] == target_pos[i]
            rows.append({"answer": first, "valid": bool(valid[i]), "hit": bool(hits[i])})
        metrics = {"HR@1": mean_with_interval(hits), "ValidRatio": mean_with_interval(valid),
                   "HR@1 (valid only)": mean_with_interval(hits[valid == 1])}
    return _record(run, Evaluation(split, method or mode, metrics, info, rows, stored, targets,
                                   _recorded_scores(rows)), record)


def _record(run: Run, result: Evaluation, record: bool) -> Evaluation:
    """Complete each prediction row with its sample and write them with the metrics."""
    s = run.data.splits[result.split]
    for i, row in enumerate(result.rows):
        row.update(user=run.data.raw_user_ids[s.users[i]], history=s.history_of(i),
                   candidates=result.candidates[i].tolist(), target=int(s.targets[i]))
    if record:
        main_writes(lambda: record_metrics(run.path, result.split, result.method,
                                           result.metrics, result.info, result.rows))
    return result


def evaluate_retrieved(run: Run, split: str, mode: str, *, batch_size: int,
                       limit: int | None, method: str | None, hybrid: bool | None,
                       permutations: int, record: bool, show_progress: bool, size: int
                       ) -> Evaluation:
    """The LLM re-ranking its encoder's top ``size`` unseen items (shown in a seeded random
    order), over every sample of ``split``: a target outside the shortlist is a miss.
    Metrics: HR@1, NDCG@10, Recall@10, Recall@size, MRR; ``retrieved``, the share of samples
    whose target is in the shortlist, and HR@1 and NDCG@10 among them."""
    if mode != "score" or permutations > 1 or run.data.settings.draws > 1:
        raise LlaraKitError("--candidates retrieved ranks the encoder's shortlist by the run's "
                            "objective: use --mode score, one order and one draw.")
    if size < 2 or size > run.data.n_items:
        raise LlaraKitError(f"--shortlist {size} must lie between 2 and the "
                            f"{run.data.n_items} items.")
    s = run.data.splits[split]
    n = len(s) if limit is None else min(limit, len(s))
    hybrid = run.hybrid if hybrid is None else hybrid
    found = shortlists(_cpu_encoder(run), run.data, split, size, np.arange(n))
    rng = np.random.default_rng([run.config.seed, _RETRIEVED_ORDER,
                                 EVALUATION_SPLITS.index(split) + 1])
    lists = shuffled(found.items, rng)  # (n, K)
    run.model.eval()
    scores = llm_scores(run, split, Layout(0, 0, lists), hybrid, batch_size,
                        f"re-ranking {split} shortlists", show_progress)  # (n, K)
    ranks = list_ranks(scores, lists, s.targets[:n])
    metrics = summarise(ranks, retrieved_metrics(size))
    inside = found.retrieved
    metrics["retrieved"] = mean_with_interval(inside.astype(np.float64))
    among = summarise(ranks[inside], ("HR@1", "NDCG@10")) if inside.any() else {}
    metrics |= {f"{name} | retrieved": value for name, value in among.items()}
    info = {"mode": mode, "hybrid": hybrid, "samples": n, "candidates": "retrieved",
            "shortlist": size, "versus_encoder": versus_encoder(run, split, lists, scores)}
    rows = [{"ranking": lists[i][np.argsort(-scores[i], kind="stable")].tolist(),
             "hit": bool(ranks[i] == 0), "scores": [round(float(x), 5) for x in scores[i]],
             "encoder_rank": float(found.target_rank[i])} for i in range(n)]
    return _record(run, Evaluation(split, method or f"{mode}-retrieved", metrics, info, rows,
                                   lists, s.targets[:n], _recorded_scores(rows)), record)
