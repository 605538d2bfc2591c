"""A table like the paper's Table 2: baselines and LLaRA variants on the same candidates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llara_kit.data import PreparedData
from llara_kit.errors import LlaraKitError
from llara_kit.evaluate import load_metrics
from llara_kit.metrics import format_interval
from llara_kit.ranking import popularity_scorer, score_item_scorer

SCHEDULE_LABELS = {
    "linear": "LLaRA (curriculum)",
    "text-only": "text-only tuning (TALLRec-like)",
    "hybrid-only": "hybrid from the start",
    "two-stage": "two-stage",
}


def _label(config: dict[str, Any]) -> str:
    schedule = SCHEDULE_LABELS.get(config["schedule"], f"LLaRA ({config['schedule']})")
    return f"{schedule}, {config['encoder']}+{config['projector']}"


def comparison(runs: list[Path], data: PreparedData, split: str = "test",
               mode: str = "score") -> dict[str, dict[str, dict[str, float]]]:
    """{method: metrics} for popularity, each run's encoder alone, zero-shot, and each run."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    if split == "test":
        rows["popularity"] = score_item_scorer(popularity_scorer(data), data, "test")
    for run in runs:
        run = Path(run)
        config = json.loads((run / "config.json").read_text())["config"]
        run_hash = json.loads((run / "data.json").read_text())["hash"]
        if run_hash != data.hash:
            raise LlaraKitError(
                f"Run {str(run)!r} used data {run_hash[:16]}, not {data.hash[:16]} like the "
                "first run; compare runs on the same data and candidates."
            )
        pretrain = json.loads((run / "encoder" / "pretrain.json").read_text())
        if split == "test":
            rows.setdefault(f"{config['encoder']} alone", pretrain["test"])
        stored = load_metrics(run).get(split, {})
        if f"zero-shot-{mode}" in stored:
            rows.setdefault(f"{config['llm']} zero-shot", stored[f"zero-shot-{mode}"]["metrics"])
        if mode not in stored:
            raise LlaraKitError(
                f"Run {str(run)!r} has no {mode} results on {split}; run "
                f"`llara-kit evaluate {run} --mode {mode} --split {split}` first."
            )
        rows[_label(config)] = stored[mode]["metrics"]
    return rows


def markdown(rows: dict[str, dict[str, dict[str, float]]], metrics: list[str]) -> str:
    """The comparison as a Markdown table, value [95% interval] per cell."""
    lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, m in rows.items():
        cells = [format_interval(m[k]) if k in m else "-" for k in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
