"""Evaluating a LLaRA run on the stored valid/test candidates, in three modes.

- ``score``: rank the candidates by the run's objective (``title``: the length-normalised
  log-likelihood of each title after the prompt; ``head``: the score head, one forward pass).
  Every answer is valid by construction.
- ``generate``: the paper's protocol: greedy generation, first line, exact match (after
  normalisation) against the candidate titles. ``HR@1`` counts an invalid answer as a miss;
  ``HR@1 (valid only)`` divides by the valid answers, as the reference code's ``test_hr`` did.
- ``constrained``: greedy generation restricted to the candidate titles by a prefix tree.

Results go to the run folder's ``metrics.json`` (keyed by split and method) and
``predictions-<split>-<method>.jsonl`` (see ``llara_kit.run_folder``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llara_kit.config import MODES
from llara_kit.distributed import gather_rows, main_writes, process_share, shard
from llara_kit.errors import LlaraKitError
from llara_kit.inference import greedy_answers
from llara_kit.layouts import Layout, layout_summary, layouts
from llara_kit.metrics import mean_with_interval
from llara_kit.plugins import build_component
from llara_kit.prompts import Prompt
from llara_kit.run import LoadedRun
from llara_kit.run_folder import record_metrics


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away, for exact title matching."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def uses_hybrid(run: LoadedRun) -> bool:
    """Evaluate in the form the run ended its training in (text-only runs: text prompts)."""
    schedule = build_component("schedule", run.config.schedule, **run.config.schedule_options)
    return schedule(1.0) >= 0.5


def split_prompts(run: LoadedRun, split: str, hybrid: bool, limit: int | None = None,
                  candidates: np.ndarray | None = None
                  ) -> tuple[list[Prompt], np.ndarray, np.ndarray]:
    """Prompts (first phrasing), candidates (n, C) and targets (n,) of a stored split; the
    stored candidates unless others are given (another order or draw, (n, C))."""
    s = run.data.splits[split]
    candidates = s.candidates if candidates is None else candidates
    n = len(candidates) if limit is None else min(limit, len(candidates))
    candidates = candidates[:n]
    prompts = [
        run.template.render(run.data.titles, s.history_of(i), candidates[i].tolist(), hybrid)
        for i in range(n)
    ]
    return prompts, candidates, s.targets[:n]


def _batches(n: int, size: int, label: str, show: bool):
    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=not show)
    with progress:
        task = progress.add_task(label, total=n)
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))
            progress.update(task, advance=min(size, n - start))


def _candidate_titles(run: LoadedRun, candidates: np.ndarray) -> list[list[str]]:
    return [[run.data.titles[c] for c in row] for row in candidates]


def llm_scores(run: LoadedRun, split: str, layout: Layout, hybrid: bool, batch_size: int,
               label: str, show_progress: bool) -> np.ndarray:
    """The run's objective's scores of one layout's candidates: (n, C)."""
    prompts, candidates, _ = split_prompts(run, split, hybrid, candidates=layout.candidates)
    rank, world = process_share()  # launched processes score a slice of the users each
    mine = shard(np.arange(len(prompts)), rank, world)
    prompts, candidates = [prompts[i] for i in mine], candidates[mine]
    titles = _candidate_titles(run, candidates)
    objective = run.model.objective
    scores = [objective.score(run.model, run.backbone, prompts[sl], titles[sl]).numpy()
              for sl in _batches(len(prompts), batch_size, label, show_progress and rank == 0)]
    return gather_rows(np.concatenate(scores) if scores
                       else np.zeros(candidates.shape, dtype=np.float32))


def _layout_label(split: str, layout: Layout, views: list[Layout]) -> str:
    parts = []
    if any(v.order for v in views):
        parts.append(f"order {layout.order + 1}/{max(v.order for v in views) + 1}")
    if any(v.draw for v in views):
        parts.append(f"draw {layout.draw + 1}/{max(v.draw for v in views) + 1}")
    return f"scoring {split}" + (f" ({', '.join(parts)})" if parts else "")


def evaluate(run: LoadedRun, split: str = "test", mode: str = "score", *, batch_size: int = 4,
             limit: int | None = None, method: str | None = None, hybrid: bool | None = None,
             permutations: int = 1, record: bool = True, show_progress: bool = True
             ) -> dict[str, Any]:
    """Evaluate ``run``; returns the metrics and, with ``record``, writes them and the
    predictions into the run folder under ``method`` (default: the mode). ``hybrid`` defaults
    to the form the run ended training in. In score mode every stored draw is scored under
    ``permutations`` candidate orders and the metrics average over them (see layouts)."""
    if mode not in MODES:
        raise LlaraKitError(f"Unknown evaluation mode {mode!r}. Available: {', '.join(MODES)}.")
    if split not in ("valid", "test"):
        raise LlaraKitError(f"Evaluate on 'valid' or 'test', not {split!r}.")
    s = run.data.splits[split]
    if mode != "score" and (permutations > 1 or run.data.settings.draws > 1):
        raise LlaraKitError(
            f"Mode {mode!r} reads the stored order of the first draw; --permutations and "
            "--draws apply to --mode score."
        )
    hybrid = uses_hybrid(run) if hybrid is None else hybrid
    n = len(s) if limit is None else min(limit, len(s))
    candidates, targets = s.candidates[:n], s.targets[:n]
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
                 **{k: summary[k] for k in ("by_position", "position_bias", "spread")}}
        ranks = summary["ranks"]  # (L, n); layout 0 is the stored order of the first draw
        for i in range(n):
            order = np.argsort(-scores[0, i], kind="stable")
            rows.append({"ranking": candidates[i][order].tolist(), "hit": bool(ranks[0, i] == 0),
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
        cand_titles = _candidate_titles(run, candidates)
        target_pos = s.target_positions()[:n]
        answers = []
        constrain = cand_titles if mode == "constrained" else None
        for sl in _batches(len(prompts), batch_size, f"{mode} {split}", show_progress):
            answers += greedy_answers(run.model, run.backbone, prompts[sl],
                                      constrain[sl] if constrain else None)
        valid, hits = np.zeros(len(answers)), np.zeros(len(answers))
        for i, answer in enumerate(answers):
            first = answer.strip().split("\n")[0].strip()
            matches = [j for j, t in enumerate(cand_titles[i]) if normalise(t) == normalise(first)]
            valid[i] = len(matches) == 1
            hits[i] = valid[i] and matches[0] == target_pos[i]
            rows.append({"answer": first, "valid": bool(valid[i]), "hit": bool(hits[i])})
        metrics = {"HR@1": mean_with_interval(hits), "ValidRatio": mean_with_interval(valid),
                   "HR@1 (valid only)": mean_with_interval(hits[valid == 1])}
    method = method or mode
    for i, row in enumerate(rows):
        row.update(user=run.data.raw_user_ids[s.users[i]],
                   history=s.history_of(i),
                   candidates=candidates[i].tolist(), target=int(targets[i]))
    if record:
        main_writes(lambda: record_metrics(run.path, split, method, metrics, info, rows))
    return metrics
