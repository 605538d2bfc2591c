"""What the commands show: every terminal table and text line built from results, in one
module (the CLI parses and calls the library, this renders). Imports rich only, so that
``llara-kit --help`` stays fast."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from llara_kit.data import PreparedData
    from llara_kit.evaluation.compare import Row
    from llara_kit.evaluation.evaluate import Evaluation
    from llara_kit.evaluation.fusion import Fusion
    from llara_kit.evaluation.recommend import Recommendation
    from llara_kit.model.lengths import TitleCut

# Off a terminal (a log file, a pipe) nothing is cut to fit a width: tables take what they need.
UNBOUNDED = 100_000


# The standard output a command started with, once ``keep_stdout_for_results`` has run.
_results: TextIO | None = None


def keep_stdout_for_results() -> None:
    """Keep standard output for the command's results: whatever else writes to it from now
    on (libraries' log lines, such as DeepSpeed's, which logs to standard output) goes to
    standard error, so that ``--json`` output stays JSON."""
    global _results
    _results = sys.stdout
    sys.stdout = sys.stderr


def restore_stdout() -> None:
    """Undo ``keep_stdout_for_results`` (for commands that print with ``click.echo``)."""
    if _results is not None:
        sys.stdout = _results


def results() -> TextIO:
    """The stream the commands' results go to."""
    return _results or sys.stdout


def stdout() -> Console:
    """Where the commands print results: the terminal at its width, else unbounded."""
    console = Console(file=results())
    return console if console.is_terminal else Console(file=results(), width=UNBOUNDED)


# --- cells ------------------------------------------------------------------------------
def format_interval(m: dict[str, float]) -> str:
    return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def format_paired(d: dict[str, float]) -> str:
    return f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p']:.2g}"


def short_cell(m: dict[str, float]) -> str:
    """``0.375±.031``: the value and half its 95% interval (``+`` signed for differences)."""
    half = f"{(m['high'] - m['low']) / 2:.3f}".removeprefix("0")
    return f"{m['value']:{'+' if 'p' in m else ''}.3f}±{half}"


def format_p(p: float) -> str:
    return "<.001" if p < 0.001 else f"{p:.3f}".removeprefix("0")


def cell(m: dict[str, dict[str, float]], column: str) -> str:
    if column not in m:
        return "-"
    return format_paired(m[column]) if "p" in m[column] else format_interval(m[column])


def markdown(table: dict[str, dict[str, dict[str, float]]], columns: list[str]) -> str:
    """The comparison as a Markdown table, value [95% interval] per cell."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, m in table.items():
        cells = [cell(m, k) for k in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def key_value_table(title: str, items: dict[str, Any]) -> Table:
    """Two columns, one row per item (a training summary)."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in items.items():
        table.add_row(key.replace("_", " "), str(value))
    return table


# --- plugins and data -------------------------------------------------------------------
def plugins_table(plugins: list[dict[str, Any]], kinds: tuple[str, ...]) -> Table:
    """``list-plugins``: each plugin, its status and the components it provides."""
    table = Table(title="llara-kit plugins")
    table.add_column("plugin (source, version)", no_wrap=True)
    table.add_column("status")
    table.add_column("components")
    for p in plugins:
        status = "[green]ok[/]" if p["status"] == "ok" else f"[red]broken[/]: {p['error']}"
        provided = p["components"]
        components = "\n".join(
            f"{kind}: {', '.join(provided[kind])}" for kind in kinds if kind in provided
        )
        plugin = f"{p['name']}\n[dim]{p['source']}, {p['version']}[/]"
        table.add_row(plugin, status, components or "-", end_section=True)
    return table


def data_json(prepared: PreparedData, reused: bool, titles: TitleCut | None = None
              ) -> dict[str, Any]:
    shown = {"path": str(prepared.path), "reused": reused, **prepared.manifest}
    if titles is not None:
        shown["titles"] = {"title_tokens": titles.limit, "cut": titles.cut,
                           "longest_tokens": titles.longest_tokens,
                           "longest_item": prepared.raw_item_ids[titles.longest_item]}
    return shown


def data_table(prepared: PreparedData, reused: bool, titles: TitleCut | None = None) -> Table:
    """``data prepare`` / ``data info``: counts, skipped rows, columns, titles, hash."""
    m = prepared.manifest
    table = Table(title=f"{m['dataset']} ({'reused from cache' if reused else 'prepared'})",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key in ("users", "items", "interactions", *(f"{s}_{n}" for n in ("users", "samples")
                                                    for s in ("train", "valid", "test")),
                "new_items", "valid-new_samples", "test-new_samples", "items_with_attributes"):
        if key in m["counts"]:  # the new-item counts with --new-items only
            table.add_row(key.replace("_", " "), f"{m['counts'][key]:,}")
    for reason, count in m["skipped"].items():
        table.add_row(f"skipped: {reason}", f"[yellow]{count:,}[/]")
    for file, columns in m.get("columns", {}).items():
        table.add_row(f"columns of {file}", ", ".join(f"{k}={v}" for k, v in columns.items()))
    if titles is not None:
        table.add_row("titles", titles.describe(prepared.raw_item_ids))
    table.add_row("settings", json.dumps(m["settings"]))
    table.add_row("hash", m["hash"][:16])
    table.add_row("folder", str(prepared.path))
    if not reused:
        table.add_row("prepared in", f"{m['prepare_seconds']:.1f} s")
    return table


# --- evaluation -------------------------------------------------------------------------
def metrics_table(title: str, columns: dict[str, dict[str, dict[str, float]]]) -> Table:
    """One row per metric, one column per method: value [95% interval]."""
    table = Table(title=title)
    table.add_column("metric", style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    for metric in next(iter(columns.values())):
        table.add_row(metric, *(format_interval(col[metric]) if metric in col else "-"
                                for col in columns.values()))
    return table


def versus_encoder_line(v: dict[str, Any]) -> str:
    return (f"top-1 differs from the encoder's for {v['top1_differs']:.1%} of the users; there "
            f"the run is right {v['llm_right']} times, the encoder {v['encoder_right']} times")


def fusion_line(fused: Fusion) -> str:
    return (f"fusion weight λ={fused.lam} chosen on valid {fused.key}: {fused.valid}")


def layout_report(result: Evaluation) -> list[Any]:
    """HR@1 by the target's position, the position-bias tests and the spread over orders
    and draws, of an evaluation under several layouts."""
    details = result.info
    pos, bias, spread = details["by_position"], details["position_bias"], details["spread"]
    table = Table(title="HR@1 by the target's candidate position (pooled over layouts)")
    for column in ("position", "samples", "HR@1", "top-1 picks"):
        table.add_column(column, justify="right")
    for i, (n, hr, share) in enumerate(zip(pos["samples"], pos["HR@1"], pos["top1_share"],
                                           strict=True)):
        table.add_row(str(i + 1), str(n), "-" if hr is None else f"{hr:.3f}", f"{share:.3f}")
    out: list[Any] = [table, (
        f"position bias: HR@1 spread across positions {bias['HR@1_spread']:.3f} "
        f"(χ² p={bias['HR@1_p']:.2g}); top-1 picks uniform over positions: "
        f"χ² p={bias['top1_p']:.2g}")]
    if details["orders"] > 1:
        out.append(f"HR@1 over {details['orders']} orders: widest range "
                   f"{spread['orders']['range']:.3f} "
                   f"({', '.join(f'{x:.3f}' for x in spread['orders']['HR@1'][0])} on draw 1)")
    if details["draws"] > 1:
        out.append(f"HR@1 over {details['draws']} draws: range {spread['draws']['range']:.3f} "
                   f"({', '.join(f'{x:.3f}' for x in spread['draws']['HR@1'])})")
    return out


# --- comparison -------------------------------------------------------------------------
def comparison_table(rows: dict[str, Row], table: dict, split: str, mode: str,
                     data: PreparedData, against: str | None, intervals: bool,
                     candidates: str = "stored") -> Table:
    """The comparison in 80 columns: short labels, value ± half-interval cells."""
    retrieved = candidates == "retrieved"
    if against:
        shown = ["HR@1", "ΔHR@1", "p", "NDCG@10", "ΔNDCG@10"]
    elif retrieved:
        recall = next(k for k in next(iter(table.values())) if k.startswith("Recall@")
                      and k != "Recall@10")
        shown = ["HR@1", "NDCG@10", "Recall@10", recall, "MRR"]
    elif mode == "score":
        shown = ["HR@1", "HR@5", "NDCG@10", "MRR"]
    else:
        shown = ["HR@1", "HR@5", "NDCG@10", "ValidRatio"]
    draws = f", {data.settings.draws} draws" if data.settings.draws > 1 else ""
    vs = f"; Δ: paired difference to {rows[against].short}" if against else ""
    where = ("whole catalogue (runs re-rank the encoder's shortlist)" if retrieved
             else f"{data.settings.candidates} candidates{draws}")
    out = Table(title=f"{split}, {mode}, {len(data.splits[split])} users, {where}{vs}",
                box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    out.add_column("method", style="bold", no_wrap=True)
    for column in shown:
        out.add_column(column, justify="right", no_wrap=not intervals)
    for name, m in table.items():
        cells = []
        for column in shown:
            key = "ΔHR@1" if column == "p" else column
            if key not in m:
                cells.append("-")
            elif column == "p":
                cells.append(format_p(m[key]["p"]))
            else:
                cells.append(cell(m, column) if intervals else short_cell(m[column]))
        out.add_row(rows[name].short, *cells)
    return out


def bucket_table(kind: str, per_metric: dict[str, dict[str, dict]], rows: dict[str, Row],
                 against: str) -> Table:
    """Each row's paired ΔHR@1 and ΔNDCG@10 to ``against`` by bucket of one kind, with the
    bucket's size (``per_metric``: ``compare.bucket_comparison``'s value for the kind): one
    line per bucket and method, one header line."""
    table = Table(title=f"Δ to {rows[against].short} by {kind}", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    table.add_column("bucket", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("method", style="bold", no_wrap=True)
    for m in per_metric:
        table.add_column(f"Δ{m}", justify="right", no_wrap=True)
    first = next(iter(per_metric.values()))
    names = [n for n in rows if n != against and n in next(iter(first.values()))]
    for bucket, cells in first.items():
        for i, name in enumerate(names):
            table.add_row(bucket if i == 0 else "", str(cells["samples"]) if i == 0 else "",
                          rows[name].short, *(short_cell(per_metric[m][bucket][name])
                                              for m in per_metric),
                          end_section=i == len(names) - 1)
    return table


# --- recommend --------------------------------------------------------------------------
def recommendations_table(recs: list[Recommendation]) -> Table:
    table = Table(title="recommendations", caption="new: an item held out as new, never trained "
                  "on (scored from its text)" if any(r.new for r in recs) else None)
    for col in ("rank", "item", "title", "score"):
        table.add_column(col)
    for i, r in enumerate(recs, 1):
        table.add_row(str(i), r.item, r.title + (" (new)" if r.new else ""), f"{r.score:.3f}")
    return table
