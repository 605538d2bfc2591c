"""A table like the paper's Table 2: baselines and LLaRA variants on the same candidates,
with paired differences to one chosen row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llara_kit.data import PreparedData
from llara_kit.encoders import load_encoder
from llara_kit.errors import LlaraKitError
from llara_kit.evaluate import load_metrics
from llara_kit.metrics import (
    CANDIDATE_METRICS,
    format_interval,
    paired_difference,
    per_sample,
    summarise,
)
from llara_kit.ranking import ItemScorer, all_item_scores, candidate_ranks, popularity_scorer
from llara_kit.storage import read_jsonl

SCHEDULE_LABELS = {
    "linear": "LLaRA (curriculum)",
    "text-only": "text-only tuning (TALLRec-like)",
    "hybrid-only": "hybrid from the start",
    "two-stage": "two-stage",
}
PAIRED = ("HR@1", "NDCG@10")  # metrics given paired differences (HR@1 is 0/1 per sample)


@dataclass
class Row:
    metrics: dict[str, dict[str, float]]  # metric -> {"value", "low", "high"}
    values: dict[str, np.ndarray] = field(default_factory=dict)  # per-sample, for pairing


def _from_ranks(ranks: np.ndarray) -> Row:
    return Row(summarise(ranks, CANDIDATE_METRICS),
               {m: per_sample(ranks, m) for m in PAIRED})


def _scorer_row(scorer: ItemScorer, data: PreparedData, split: str) -> Row:
    return _from_ranks(candidate_ranks(all_item_scores(scorer, data, split), data, split))


def _stored_row(run: Path, split: str, method: str, metrics: dict) -> Row:
    """A run's stored method: per-sample values from its predictions file."""
    path = run / f"predictions-{split}-{method}.jsonl"
    preds = read_jsonl(path) if path.is_file() else []
    row = Row(metrics)
    if preds and "ranking" in preds[0]:
        ranks = np.array([p["ranking"].index(p["target"]) for p in preds])
        row.values = {m: per_sample(ranks, m) for m in PAIRED}
    elif preds:
        row.values = {"HR@1": np.array([float(p["hit"]) for p in preds])}
    return row


def label(config: dict[str, Any]) -> str:
    schedule = SCHEDULE_LABELS.get(config["schedule"], f"LLaRA ({config['schedule']})")
    extras = [config.get("objective", "title")]
    if config.get("user_conditioned"):
        extras.append("user-cond")
    return f"{schedule}, {config['encoder']}+{config['projector']} ({', '.join(extras)})"


def comparison(runs: list[Path], data: PreparedData, split: str = "test",
               mode: str = "score") -> dict[str, Row]:
    """{method: Row} for popularity, each run's encoder alone, zero-shot, each run, and each
    run's fusion with its encoder where evaluated."""
    rows: dict[str, Row] = {"popularity": _scorer_row(popularity_scorer(data), data, split)}
    for run in runs:
        run = Path(run)
        config = json.loads((run / "config.json").read_text())["config"]
        run_hash = json.loads((run / "data.json").read_text())["hash"]
        if run_hash != data.hash:
            raise LlaraKitError(
                f"Run {str(run)!r} used data {run_hash[:16]}, not {data.hash[:16]} like the "
                "first run; compare runs on the same data and candidates."
            )
        if f"{config['encoder']} alone" not in rows:
            encoder = load_encoder(run / "encoder")
            rows[f"{config['encoder']} alone"] = _scorer_row(encoder, data, split)
        stored = load_metrics(run).get(split, {})
        if f"zero-shot-{mode}" in stored:
            rows.setdefault(f"{config['llm']} zero-shot",
                            _stored_row(run, split, f"zero-shot-{mode}",
                                        stored[f"zero-shot-{mode}"]["metrics"]))
        if mode not in stored:
            raise LlaraKitError(
                f"Run {str(run)!r} has no {mode} results on {split}; run "
                f"`llara-kit evaluate {run} --mode {mode} --split {split}` first."
            )
        name = label(config)
        rows[name] = _stored_row(run, split, mode, stored[mode]["metrics"])
        if mode == "score" and "fused" in stored:
            lam = stored["fused"]["lambda"]
            rows[f"{name} + {config['encoder']} fused (λ={lam})"] = _stored_row(
                run, split, "fused", stored["fused"]["metrics"])
    return rows


def find_row(rows: dict[str, Row], name: str) -> str:
    """The row named ``name``, or the one row whose name starts with it."""
    if name in rows:
        return name
    matches = [r for r in rows if r.lower().startswith(name.lower())]
    if len(matches) != 1:
        raise LlaraKitError(
            f"--against {name!r} matches {len(matches)} rows; give one of: {'; '.join(rows)}."
        )
    return matches[0]


def add_paired(rows: dict[str, Row], against: str) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {"Δ HR@1 vs X": {value, low, high, p}, ...}} on the samples both rows scored."""
    base = rows[find_row(rows, against)]
    out = {}
    for name, row in rows.items():
        out[name] = {}
        for metric in PAIRED:
            a, b = row.values.get(metric), base.values.get(metric)
            if a is not None and b is not None and len(a) == len(b):
                out[name][f"Δ{metric}"] = paired_difference(a, b, binary=metric == "HR@1")
    return out


def table_json(rows: dict[str, Row], paired: dict | None) -> dict[str, Any]:
    return {name: row.metrics | ((paired or {}).get(name) or {}) for name, row in rows.items()}


def format_paired(d: dict[str, float]) -> str:
    return f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p']:.2g}"


def markdown(table: dict[str, dict[str, dict[str, float]]], columns: list[str]) -> str:
    """The comparison as a Markdown table, value [95% interval] per cell."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, m in table.items():
        cells = [cell(m, k) for k in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cell(m: dict[str, dict[str, float]], column: str) -> str:
    if column not in m:
        return "-"
    return format_paired(m[column]) if "p" in m[column] else format_interval(m[column])
