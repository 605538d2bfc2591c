"""A run's story on one self-contained HTML page: training curves, the comparison with its
intervals, HR@1 by candidate position, and the config and data hash. Figures are PNGs drawn
with matplotlib and embedded, so the page opens offline and travels as one file."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.compare import (
    PAIRED,
    Row,
    add_paired,
    compare_runs,
    shortlist_size,
    table_json,
)
from llara_kit.render import format_interval
from llara_kit.run_folder import (
    has_metrics,
    load_metrics,
    read_config,
    read_data_manifest,
    read_log,
    read_summary,
    require_run,
)
from llara_kit.storage import atomic_path
from llara_kit.version import VERSION

INSTALL_HINT = "pip install 'llara-kit[report]'"
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
td, th { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f3f3f3; } td.n { white-space: nowrap; } img { max-width: 100%; }
.note { color: #666; font-size: .9em; }
code { background: #f3f3f3; padding: 0 .2em; }
"""


def _figure(width: float, height: float, panels: int = 1):
    try:
        from matplotlib.figure import Figure
    except ImportError:  # an extra: the toolkit itself does not need it
        raise LlaraKitError(
            f"`llara-kit report` draws its figures with matplotlib, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from None
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _png(fig) -> str:
    """The figure as an <img> with the PNG inline."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what they have)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    return (sums[idx] - sums[np.maximum(idx - window, 0)]) / np.minimum(idx, window)


def _logs(runs: list[Path]) -> list[tuple[Path, list[dict]]]:
    logs = [(run, read_log(run)) for run in runs]
    return [(run, log) for run, log in logs if log]


def training_figure(runs: list[Path]) -> str:
    """Loss (per step, faint, and a trailing mean over 1/20 of the steps) and learning rate
    per optimizer step, one colour per run."""
    fig, (loss, lr) = _figure(11, 3.2, 2)
    for run, log in _logs(runs):
        step = np.array([e["step"] for e in log])
        raw = np.array([e["loss"] for e in log])
        line = loss.plot(step, raw, alpha=0.3)[0]
        loss.plot(step, _smooth(raw, max(1, len(log) // 20)), color=line.get_color(),
                  label=run.name)
        lr.plot(step, [e["lr"] for e in log], color=line.get_color(), label=run.name)
    loss.set(title="training loss (faint: per step)", xlabel="optimizer step")
    lr.set(title="learning rate", xlabel="optimizer step")
    loss.legend(fontsize=7)
    return _png(fig)


def curriculum_figure(runs: list[Path]) -> str:
    """The curriculum: the scheduled hybrid probability p and the realised share of hybrid
    prompts (a trailing mean over 1/20 of the steps) per optimizer step."""
    fig, (share,) = _figure(11, 2.8)
    for run, log in _logs(runs):
        step = np.array([e["step"] for e in log])
        line = share.plot(step, [e["p_hybrid"] for e in log], ls="--",
                          label=f"{run.name}: scheduled p")[0]
        realised = _smooth(np.array([e["hybrid_share"] for e in log]), max(1, len(log) // 20))
        share.plot(step, realised, color=line.get_color(), label=f"{run.name}: realised share")
    share.set(title="curriculum: share of hybrid prompts", xlabel="optimizer step",
              ylim=(-0.05, 1.05))
    share.legend(fontsize=7, loc="upper left")
    return _png(fig)


def comparison_figure(rows: dict[str, Row]) -> str:
    """HR@1 and NDCG@10 of every row with its 95% interval, as points with error bars."""
    fig, axes = _figure(11, 0.45 * len(rows) + 1.2, 2)
    names = list(rows)[::-1]  # first row on top
    y = np.arange(len(names))
    for ax, metric in zip(axes, PAIRED, strict=True):
        m = [rows[n].metrics.get(metric) for n in names]
        shown = [i for i, v in enumerate(m) if v]
        values = np.array([m[i]["value"] for i in shown])
        errors = np.array([[m[i]["value"] - m[i]["low"], m[i]["high"] - m[i]["value"]]
                           for i in shown]).T
        ax.errorbar(values, y[shown], xerr=errors, fmt="o", capsize=3)
        for i, v in zip(shown, values, strict=True):
            ax.annotate(f"{v:.3f}", (v, y[i]), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=7)
        ax.set(title=f"{metric} (95% interval)", ylim=(-0.6, len(names) - 0.4))
        ax.set_yticks(y, [rows[n].short for n in names] if ax is axes[0] else [])
        ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def position_figure(run: Path, details: dict[str, Any]) -> str:
    """HR@1 by the target's candidate position and the share of top-1 picks at each."""
    pos = details["by_position"]
    n = len(pos["samples"])
    x = np.arange(1, n + 1)
    fig, (hit, picks) = _figure(11, 3, 2)
    hr = np.array([np.nan if v is None else v for v in pos["HR@1"]])
    hit.bar(x, hr, color="tab:blue")
    overall = details["metrics"]["HR@1"]["value"]
    hit.axhline(overall, color="k", ls="--", lw=1, label=f"overall {overall:.3f}")
    hit.set(title="HR@1 by the target's position", xlabel="candidate position",
            ylabel="HR@1")
    hit.legend(fontsize=7)
    picks.bar(x, pos["top1_share"], color="tab:orange")
    picks.axhline(1 / n, color="k", ls="--", lw=1, label=f"uniform 1/{n}")
    picks.set(title="share of top-1 picks at each position", xlabel="candidate position")
    picks.legend(fontsize=7)
    ticks = sorted({1, *range(5, n + 1, 5)})  # positions are 1..n
    for ax in (hit, picks):
        ax.set(xticks=ticks, xlim=(0.4, n + 0.6))
    fig.suptitle(f"{run.name}: {details['orders']} order(s) x {details['draws']} draw(s), "
                 f"{details['samples']} samples each", fontsize=9)
    return _png(fig)


def _table(header: list[str], body: list[list[str]]) -> str:
    """An HTML table; cells after the first do not wrap."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i else ''}>{html.escape(c)}</td>"
                         for i, c in enumerate(r)) + "</tr>"
        for r in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _comparison_section(runs: list[Path], split: str, mode: str,
                        candidates: str = "stored") -> tuple[str, dict]:
    """The comparison (with paired differences to the first run's encoder alone): on the
    stored candidates a figure and a table, over the whole catalogue a table; or a note
    saying what to run first."""
    try:
        data, rows = compare_runs(runs, split, mode, candidates)
    except LlaraKitError as exc:
        return f'<p class="note">No comparison: {html.escape(str(exc))}</p>', {}
    encoder = read_config(runs[0]).encoder
    paired = add_paired(rows, f"{encoder} alone")
    table = table_json(rows, paired)
    retrieved = candidates == "retrieved"
    key = "NDCG@10" if retrieved else "HR@1"  # the metric the paired column shows
    shown = (["HR@1", "NDCG@10", "Recall@10", *(k for k in next(iter(table.values()))
                                                 if k.startswith("Recall@") and k != "Recall@10")]
             if retrieved else ["HR@1", "HR@5", "NDCG@10"])
    columns = [*shown, f"Δ{key} vs {encoder}", "p"]
    body = []
    for name, m in table.items():
        delta = m.get(f"Δ{key}")
        body.append([name, *(format_interval(m[k]) if k in m else "-" for k in shown),
                     f"{delta['value']:+.3f} [{delta['low']:+.3f}, {delta['high']:+.3f}]"
                     if delta else "-", f"{delta['p']:.2g}" if delta else "-"])
    where = ("the whole catalogue: each run re-ranks its encoder's top "
             f"{shortlist_size(runs[0], split, mode)} unseen items, the baselines rank every "
             "unseen item, a target outside the shortlist is a miss" if retrieved
             else f"{data.settings.candidates} candidates, {data.settings.draws} draw(s)")
    caption = (f"<p>{split} split, {mode} mode, {len(data.splits[split])} users, {where}; "
               "95% bootstrap intervals; Δ: paired difference on the same users with its "
               "paired test's p-value.</p>")
    figure = "" if retrieved else comparison_figure(rows)
    return caption + figure + _table(["method", *columns], body), table


def _run_section(run: Path, split: str, mode: str) -> str:
    data = read_data_manifest(run)
    parts = [f"<h3>{html.escape(str(run))}</h3>"]
    stored = load_metrics(run).get(split, {}).get(mode) if has_metrics(run) else None
    if stored and "by_position" in stored:
        bias, spread = stored["position_bias"], stored["spread"]
        parts.append(position_figure(run, stored))
        text = (f"Position bias: HR@1 spreads {bias['HR@1_spread']:.3f} across positions "
                f"(χ² test of hits independent of position: p={bias['HR@1_p']:.2g}); top-1 "
                f"picks uniform over positions: χ² p={bias['top1_p']:.2g}.")
        if stored["orders"] > 1:
            text += f" HR@1 over {stored['orders']} orders: range {spread['orders']['range']:.3f}."
        else:
            text += (" More orders: <code>llara-kit evaluate "
                     f"{html.escape(str(run))} --permutations 5</code>.")
        if stored["draws"] > 1:
            text += (f" HR@1 over {stored['draws']} draws: "
                     f"{', '.join(f'{x:.3f}' for x in spread['draws']['HR@1'])} "
                     f"(range {spread['draws']['range']:.3f}).")
        parts.append(f"<p>{text}</p>")
    else:
        parts.append(f'<p class="note">No {mode} results on {split} by position yet: run '
                     f"<code>llara-kit evaluate {html.escape(str(run))}</code>.</p>")
    facts = {"data set": data.get("dataset", "-"), "data hash": data["hash"],
             "data settings": json.dumps(data.get("settings", {})),
             **{f"training: {k}": str(v) for k, v in
                (read_summary(run) or {}).items()}}
    config = {k: json.dumps(v) for k, v in sorted(read_config(run).to_dict().items())}
    parts.append(_table(["", "value"], [[k, str(v)] for k, v in facts.items()]))
    parts.append("<details><summary>config.json</summary>"
                 + _table(["setting", "value"], [[k, v] for k, v in config.items()])
                 + "</details>")
    return "".join(parts)


def write_report(runs: list[Path], out: Path, split: str = "test", mode: str = "score") -> Path:
    """Write the report of ``runs`` to ``out`` (atomically); returns its path."""
    runs = [Path(r) for r in runs]
    for run in runs:
        require_run(run)
    comparison_html, _ = _comparison_section(runs, split, mode)
    body = [
        f"<h1>llara-kit report: {html.escape(', '.join(r.name for r in runs))}</h1>",
        f'<p class="note">llara-kit {VERSION}, written {time.strftime("%Y-%m-%d %H:%M")}.'
        "</p>",
        "<h2>Training</h2>", training_figure(runs), curriculum_figure(runs),
        "<h2>Comparison</h2>", comparison_html,
        "<h2>Over the whole catalogue</h2>",
        _comparison_section(runs, split, mode, "retrieved")[0],
        "<h2>Runs: candidate position, config and data</h2>",
        *(_run_section(run, split, mode) for run in runs),
    ]
    page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>llara-kit report</title><style>{_STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
