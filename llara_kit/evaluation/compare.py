"""A table like the paper's Table 2: baselines and LLaRA variants on the same candidates,
with paired differences to one chosen row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llara_kit.config import TrainConfig
from llara_kit.data import PreparedData
from llara_kit.encoders.imputation import with_imputed
from llara_kit.encoders.ranking import (
    ContentScorer,
    ItemScorer,
    attribute_vectors,
    candidate_scores,
    popularity_scorer,
)
from llara_kit.encoders.shortlists import MISSED, shortlists
from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.buckets import bucket_differences, sample_buckets
from llara_kit.evaluation.fusion import fused_method
from llara_kit.evaluation.layouts import layout_summary, layouts
from llara_kit.metrics import (
    mean_with_interval,
    paired_difference,
    per_sample,
    retrieved_metrics,
    summarise,
)
from llara_kit.model.new_items import ItemSignals
from llara_kit.run import load_prepared, run_encoder
from llara_kit.run_folder import load_metrics, read_config, read_data_manifest, read_predictions

SCHEDULE_LABELS = {  # schedule -> (full label, short label for the terminal)
    "linear": ("LLaRA (curriculum)", "LLaRA"),
    "text-only": ("text-only tuning (TALLRec-like)", "text-only"),
    "hybrid-only": ("hybrid from the start", "hybrid-only"),
    "two-stage": ("two-stage", "two-stage"),
}
PAIRED = ("HR@1", "NDCG@10")  # metrics given paired differences (HR@1 is 0/1 per sample)


@dataclass
class Row:
    metrics: dict[str, dict[str, float]]  # metric -> {"value", "low", "high"}
    values: dict[str, np.ndarray] = field(default_factory=dict)  # per-sample, for pairing
    short: str = ""  # the label in an 80-column terminal table
    draws_hr1: list[float] | None = None  # HR@1 on each stored negative draw, when several
    source: str = ""  # the run folder of a run's row


def _from_ranks(ranks: np.ndarray, metrics: dict) -> Row:
    """A row with ``metrics`` and the paired metrics per sample from ``ranks`` (L, n) over L
    layouts, averaged over them."""
    return Row(metrics, {m: per_sample(ranks, m).mean(axis=0) for m in PAIRED})


def _catalogue_row(scorer: ItemScorer, data: PreparedData, split: str, size: int) -> Row:
    """An item scorer over the whole catalogue (the user's earlier items masked): its top
    ``size`` are the shortlist a run re-ranks, so Recall@size is shared with the runs."""
    found = shortlists(scorer, data, split, size)
    metrics = summarise(found.target_rank, retrieved_metrics(size))
    metrics["retrieved"] = mean_with_interval(found.retrieved.astype(np.float64))
    return _from_ranks(found.target_rank[None], metrics)


def _scorer_row(scorer: ItemScorer, data: PreparedData, split: str) -> Row:
    """An item scorer on every stored draw (in the stored order: the order cannot matter)."""
    s = data.splits[split]
    views = layouts(s)
    summary = layout_summary(
        candidate_scores(scorer, data, split, np.stack([v.candidates for v in views])),
        np.stack([v.target_positions(s.targets) for v in views]),
        np.array([v.draw for v in views]))
    row = _from_ranks(summary["ranks"], summary["metrics"])
    row.draws_hr1 = summary["spread"]["draws"]["HR@1"] if len(s.candidate_draws()) > 1 else None
    return row


def _stored_row(run: Path, split: str, method: str, stored: dict) -> Row:
    """A run's stored method (its metrics.json entry): per-sample values from its
    predictions file."""
    metrics = stored["metrics"]
    preds = read_predictions(run, split, method)
    row = Row(metrics)
    if preds and "ranks" in preds[0]:  # several orders or draws
        row = _from_ranks(np.array([p["ranks"] for p in preds]).T, metrics)
    elif preds and "ranking" in preds[0]:  # a target outside a shortlist: never ranked
        row = _from_ranks(np.array([[p["ranking"].index(p["target"]) if p["target"] in
                                     p["ranking"] else MISSED for p in preds]]), metrics)
    elif preds:
        row.values = {"HR@1": np.array([float(p["hit"]) for p in preds])}
    if stored.get("draws", 1) > 1:
        row.draws_hr1 = stored["spread"]["draws"]["HR@1"]
    return row


def label(config: TrainConfig) -> tuple[str, str]:
    """A run's row label, in full and short (e.g. ``LLaRA head+uc``)."""
    full, short = SCHEDULE_LABELS.get(config.schedule,
                                      (f"LLaRA ({config.schedule})", config.schedule))
    extras, tags = [config.objective], ""
    if config.objective_options.get("residual"):
        extras[0], tags = f"{config.objective} residual", "+r"
    if config.user_conditioned:
        extras.append(f"user-cond {config.user_signal}")
        tags += "+uc"
    if config.negatives != "random":
        extras.append(f"{config.negatives} lists")
        tags += f"+{config.negatives[:3]}"
    if config.cross_fit:
        extras.append(f"cross-fit {config.cross_fit}")
        tags += f"+cf{config.cross_fit}"
    full = f"{full}, {config.encoder}+{config.projector} ({', '.join(extras)})"
    return full, f"{short} {config.objective}{tags}"


def content_baselines(encoder: ItemScorer, signals: ItemSignals, data: PreparedData
                      ) -> dict[str, ItemScorer]:
    """The cheaper ways to rank items the encoder never trained on, as item scorers: the
    encoder with text-imputed embeddings for new items, the frozen LLM's history-candidate
    similarity of item texts, and (where the data has attributes) attribute overlap."""
    out = {f"{encoder.name}, new items imputed from text":
           with_imputed(encoder, signals.imputed, signals.is_new),
           "frozen LLM text similarity": ContentScorer(signals.text_vectors)}
    if any(data.attributes):
        out["attribute overlap (no LLM)"] = ContentScorer(attribute_vectors(data.attributes),
                                                           centre=False)
    return out


def evaluated_draws(run: Path, split: str, mode: str) -> int:
    """How many candidate draws the run's ``mode`` results on ``split`` average over."""
    return load_metrics(run).get(split, {}).get(mode, {}).get("draws", 1)


def compare_runs(runs: list[Path], split: str = "test", mode: str = "score",
                 candidates: str = "stored") -> tuple[PreparedData, dict[str, Row]]:
    """The first run's data (on the draws it was evaluated with) and the comparison rows."""
    data = load_prepared(read_config(runs[0]), evaluated_draws(runs[0], split, mode))
    return data, comparison(runs, data, split, mode, candidates)


def shortlist_size(run: Path, split: str, mode: str = "score") -> int:
    """The shortlist size a run's whole-catalogue evaluation used."""
    stored = load_metrics(run).get(split, {}).get(f"{mode}-retrieved")
    if stored is None:
        raise LlaraKitError(
            f"Run {str(run)!r} has no whole-catalogue results on {split}; run `llara-kit "
            f"evaluate {run} --split {split} --candidates retrieved` first.")
    return stored["shortlist"]


def comparison(runs: list[Path], data: PreparedData, split: str = "test",
               mode: str = "score", candidates: str = "stored") -> dict[str, Row]:
    """{method: Row} for popularity, each run's encoder alone (and, for a run with item
    signals, ``content_baselines``), zero-shot, each run, and each run's fusion with its
    encoder where evaluated; on ``data``'s draws (``stored``), or over
    the whole catalogue (``retrieved``: the runs re-rank their encoder's shortlist, the
    baselines rank every unseen item)."""
    retrieved = candidates == "retrieved"
    size = shortlist_size(Path(runs[0]), split, mode) if retrieved else 0

    def baseline(scorer: ItemScorer) -> Row:
        return (_catalogue_row(scorer, data, split, size) if retrieved
                else _scorer_row(scorer, data, split))

    method = f"{mode}-retrieved" if retrieved else mode
    rows: dict[str, Row] = {"popularity": baseline(popularity_scorer(data))}
    for number, run in enumerate(runs, 1):
        run = Path(run)
        config = read_config(run)
        run_hash = read_data_manifest(run)["hash"]
        if run_hash != data.hash:
            raise LlaraKitError(
                f"Run {str(run)!r} used data {run_hash[:16]}, not {data.hash[:16]} like the "
                "first run; compare runs on the same data and candidates."
            )
        if f"{config.encoder} alone" not in rows:
            encoder = run_encoder(run)
            rows[f"{config.encoder} alone"] = baseline(encoder)
            signals = ItemSignals.load(run)
            if signals is not None:
                rows.update({name: baseline(scorer) for name, scorer
                             in content_baselines(encoder, signals, data).items()})
        stored = load_metrics(run).get(split, {})
        zero_shot = stored.get(f"zero-shot-{method}", {})
        if zero_shot and zero_shot.get("draws", 1) == data.settings.draws:
            row = _stored_row(run, split, f"zero-shot-{method}", zero_shot)
            row.short = "zero-shot"
            rows.setdefault(f"{config.llm} zero-shot", row)
        if method not in stored:
            raise LlaraKitError(
                f"Run {str(run)!r} has no {method} results on {split}; run "
                f"`llara-kit evaluate {run} --mode {mode} --split {split} --candidates "
                f"{candidates}` first."
            )
        if stored[method].get("shortlist", size) != size:
            raise LlaraKitError(
                f"Run {str(run)!r} re-ranked shortlists of {stored[method]['shortlist']}, the "
                f"first run of {size}; evaluate both with the same --shortlist.")
        if stored[method].get("draws", 1) != data.settings.draws:
            raise LlaraKitError(
                f"Run {str(run)!r} was evaluated on {stored[mode].get('draws', 1)} candidate "
                f"draws, the first run on {data.settings.draws}; evaluate both with the same "
                "--draws."
            )
        name, short = label(config)
        if name in rows:  # two runs of the same kind: their folders tell them apart
            name, short = f"{name} [{run.name}]", f"{short} #{number}"
        rows[name] = _stored_row(run, split, method, stored[method])
        rows[name].short, rows[name].source = short, str(run)
        fused_name = fused_method(method)
        if mode == "score" and fused_name in stored and data.settings.draws == 1:  # 1st draw
            lam = stored[fused_name]["lambda"]
            fused = _stored_row(run, split, fused_name, stored[fused_name])
            fused.short = f"{short} +{config.encoder}"
            rows[f"{name} + {config.encoder} fused (λ={lam})"] = fused
    for name, row in rows.items():
        row.short = row.short or name  # popularity, "<encoder> alone"
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
                binary = bool(np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all())
                out[name][f"Δ{metric}"] = paired_difference(a, b, binary=binary)
    return out


def table_json(rows: dict[str, Row], paired: dict | None) -> dict[str, Any]:
    """{row: {metric: {value, low, high}, Δmetric: {..., p}, "HR@1 by draw": [...]}}."""
    return {name: row.metrics | ((paired or {}).get(name) or {})
            | ({"HR@1 by draw": row.draws_hr1} if row.draws_hr1 else {})
            for name, row in rows.items()}


def bucket_comparison(rows: dict[str, Row], against: str, data: PreparedData, split: str
                      ) -> dict[str, dict[str, dict[str, dict]]]:
    """{bucket kind: {metric: {bucket: {"samples": n, row: paired difference to
    ``against``}}}} for the ``PAIRED`` metrics, by the target's popularity in training and
    by history length."""
    return {kind: {m: bucket_differences({n: r.values[m] for n, r in rows.items()
                                          if m in r.values}, against, buckets)
                   for m in PAIRED}
            for kind, buckets in sample_buckets(data, split).items()}
