"""Evaluating a LLaRA run on the stored valid/test candidates, in three modes.

- ``score``: rank the candidates by the run's objective (``title``: the length-normalised
  log-likelihood of each title after the prompt; ``head``: the score head, one forward pass).
  Every answer is valid by construction.
- ``generate``: the paper's protocol: greedy generation, first line, exact match (after
  normalisation) against the candidate titles. ``HR@1`` counts an invalid answer as a miss;
  ``HR@1 (valid only)`` divides by the valid answers, as the reference code's ``test_hr`` did.
- ``constrained``: greedy generation restricted to the candidate titles by a prefix tree.

Results go to ``metrics.json`` (keyed by split and method) and
``predictions-<split>-<method>.jsonl`` in the run folder.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llara_kit.errors import LlaraKitError
from llara_kit.inference import greedy_answers
from llara_kit.llm import load_backbone
from llara_kit.metrics import CANDIDATE_METRICS, mean_with_interval, summarise, target_ranks
from llara_kit.model import LlaraModel
from llara_kit.objectives import TitleObjective
from llara_kit.plugins import build_component
from llara_kit.prompts import Prompt
from llara_kit.run import LoadedRun
from llara_kit.storage import write_json, write_jsonl

MODES = ("score", "generate", "constrained")


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away, for exact title matching."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def uses_hybrid(run: LoadedRun) -> bool:
    """Evaluate in the form the run ended its training in (text-only runs: text prompts)."""
    schedule = build_component("schedule", run.config.schedule, **run.config.schedule_options)
    return schedule(1.0) >= 0.5


def split_prompts(run: LoadedRun, split: str, hybrid: bool,
                  limit: int | None = None) -> tuple[list[Prompt], np.ndarray, np.ndarray]:
    """Prompts (first phrasing), candidates (n, C) and targets (n,) of a stored split."""
    s = run.data.splits[split]
    n = len(s) if limit is None else min(limit, len(s))
    prompts = [
        run.template.render(run.data.titles, s.history_of(i), s.candidates[i].tolist(), hybrid)
        for i in range(n)
    ]
    return prompts, s.candidates[:n], s.targets[:n]


def _batches(n: int, size: int, label: str, show: bool):
    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=not show)
    with progress:
        task = progress.add_task(label, total=n)
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))
            progress.update(task, advance=min(size, n - start))


def evaluate(run: LoadedRun, split: str = "test", mode: str = "score", *, batch_size: int = 4,
             limit: int | None = None, method: str | None = None, hybrid: bool | None = None,
             record: bool = True, show_progress: bool = True) -> dict[str, Any]:
    """Evaluate ``run``; returns the metrics and, with ``record``, writes them and the
    predictions into the run folder under ``method`` (default: the mode). ``hybrid`` defaults
    to the form the run ended training in."""
    if mode not in MODES:
        raise LlaraKitError(f"Unknown evaluation mode {mode!r}. Available: {', '.join(MODES)}.")
    if split not in ("valid", "test"):
        raise LlaraKitError(f"Evaluate on 'valid' or 'test', not {split!r}.")
    hybrid = uses_hybrid(run) if hybrid is None else hybrid
    prompts, candidates, targets = split_prompts(run, split, hybrid, limit)
    titles = run.data.titles
    cand_titles = [[titles[c] for c in row] for row in candidates]
    target_pos = run.data.splits[split].target_positions()[: len(targets)]
    run.model.eval()
    rows = []
    if mode == "score":
        objective = run.model.objective
        scores = torch.cat([
            objective.score(run.model, run.backbone, prompts[sl], cand_titles[sl])
            for sl in _batches(len(prompts), batch_size, f"scoring {split}", show_progress)
        ]).numpy()  # (n, C)
        ranks = target_ranks(scores, target_pos)
        metrics = summarise(ranks, CANDIDATE_METRICS)
        metrics["ValidRatio"] = {"value": 1.0, "low": 1.0, "high": 1.0}
        for i in range(len(prompts)):
            order = np.argsort(-scores[i], kind="stable")
            rows.append({"ranking": candidates[i][order].tolist(), "hit": bool(ranks[i] == 0),
                         "scores": [round(float(x), 5) for x in scores[i]]})
    else:
        if run.config.objective != "title":
            raise LlaraKitError(
                f"Mode {mode!r} reads generated titles, but this run was trained with the "
                f"{run.config.objective!r} objective; use --mode score."
            )
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
    s = run.data.splits[split]
    for i, row in enumerate(rows):
        row.update(user=run.data.raw_user_ids[s.users[i]],
                   history=s.history_of(i),
                   candidates=candidates[i].tolist(), target=int(targets[i]))
    if record:
        record_metrics(run.path, split, method, metrics, {"mode": mode, "hybrid": hybrid,
                                                          "samples": len(prompts)})
        write_jsonl(run.path / f"predictions-{split}-{method}.jsonl", rows)
    return metrics


def record_metrics(run_dir: Path, split: str, method: str, metrics: dict,
                   info: dict[str, Any]) -> None:
    """Add one method's metrics to the run's metrics.json (atomically)."""
    path = Path(run_dir) / "metrics.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored.setdefault(split, {})[method] = {**info, "metrics": metrics}
    write_json(path, stored)


def load_metrics(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise LlaraKitError(
            f"{str(run_dir)!r} has no metrics.json; run `llara-kit evaluate` on it first."
        )
    return json.loads(path.read_text())


def zero_shot_view(run: LoadedRun) -> LoadedRun:
    """The same run with the untuned LLM (no LoRA), ranking by title likelihood, for the
    zero-shot baseline."""
    backbone = load_backbone(run.config.llm)
    model = LlaraModel(backbone.model, run.model.encoder, run.model.projector,
                       backbone.behaviour_id, TitleObjective(backbone.hidden_size))
    config = replace(run.config, objective="title", user_conditioned=False)
    return replace(run, model=model.to(next(run.model.parameters()).device), backbone=backbone,
                   config=config)
