"""The ``llara-kit`` command line: thin Click commands over the library."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
import warnings
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from llara_kit.config import (
    CANDIDATE_SOURCES,
    DEVICE_HELP,
    FIELDS,
    MODES,
    PRESETS,
    PretrainSettings,
    TrainConfig,
    field_default,
    resolve,
)
from llara_kit.data.settings import PROTOCOLS, SETTINGS, DataSettings
from llara_kit.errors import LlaraKitError
from llara_kit.plugins import KINDS, load_plugins
from llara_kit.scaffold import KINDS as SCAFFOLD_KINDS
from llara_kit.scaffold import write_plugin
from llara_kit.storage import HOME_ENV
from llara_kit.version import VERSION

if TYPE_CHECKING:
    from llara_kit.data import PreparedData
    from llara_kit.lengths import TitleCut

# Commands import torch, transformers and the model stack when they run, never at start:
# `llara-kit --help` and `list-plugins` answer in well under a second.

stderr = Console(stderr=True)


class _Group(click.Group):
    """Turns LlaraKitError, and a full disk or a folder it may not write, into one clear line
    and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LlaraKitError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if exc.errno not in _FILE_SYSTEM_ERRORS:
                raise
            raise click.ClickException(file_system_message(exc)) from exc


# A full disk, a read-only file system, missing permissions: the user's to fix.
_FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def file_system_message(exc: OSError) -> str:
    where = f" at {exc.filename}" if exc.filename else ""
    fix = ("check its permissions" if exc.errno in (errno.EACCES, errno.EPERM)
           else "free some space")
    return (f"{exc.strerror}{where}; {fix}, or point --out / ${HOME_ENV} at a writable folder "
            "(what was written before is intact: every write goes to a temporary file first).")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="llara-kit")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """LLaRA recommendation with LLMs: train, evaluate and extend with plugins."""
    if ctx.invoked_subcommand == "list-plugins":
        return
    for info in load_plugins().broken():
        stderr.print(f"[yellow]warning:[/] plugin {info.name!r} is broken, skipped: {info.error}")


@cli.command("list-plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def list_plugins(as_json: bool) -> None:
    """List installed plugins and the components each provides."""
    plugins = [info.to_dict() for info in load_plugins().plugins.values()]
    if as_json:
        click.echo(json.dumps(plugins, indent=2))
        return
    table = Table(title="llara-kit plugins")
    table.add_column("plugin (source, version)", no_wrap=True)
    table.add_column("status")
    table.add_column("components")
    for p in plugins:
        status = "[green]ok[/]" if p["status"] == "ok" else f"[red]broken[/]: {p['error']}"
        provided = p["components"]
        components = "\n".join(
            f"{kind}: {', '.join(provided[kind])}" for kind in KINDS if kind in provided
        )
        plugin = f"{p['name']}\n[dim]{p['source']}, {p['version']}[/]"
        table.add_row(plugin, status, components or "-", end_section=True)
    Console().print(table)


def setting_option(name: str, default: Any, help: str) -> Any:
    """A Click option for one setting. It defaults to None ("not given"), so that presets
    and TOML files can fill it; dicts take repeatable KEY=VALUE, tuples a comma list."""
    flag = "--" + name.replace("_", "-")
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    help_text = help if default in (None, {}) else f"{help}  [default: {shown}]"
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    if isinstance(default, dict):
        return click.option(flag.removesuffix("s"), name, multiple=True, metavar="KEY=VALUE",
                            help=help_text)
    if name == "protocol":
        return click.option(flag, name, type=click.Choice(PROTOCOLS), help=help_text)
    declared = str(FIELDS[name].type) if name in FIELDS else ""  # e.g. "float | None"
    kind = next((t for t in (int, float) if isinstance(default, t)
                 or declared.startswith(t.__name__)), str)
    return click.option(flag, name, type=kind, default=None, help=help_text)


def setting_value(name: str, value: Any, default: Any) -> Any:
    """A command-line value in settings form; None and empty multiples mean "not given"."""
    if isinstance(default, dict):
        return key_values(value, f"--{name.replace('_', '-').removesuffix('s')}") or None
    if isinstance(default, tuple) and value is not None:
        parts = [v.strip() for v in value.split(",")]
        if name != "split":
            return tuple(parts)
        try:
            return tuple(float(v) for v in parts)
        except ValueError:
            raise click.BadParameter("give three numbers like 0.8,0.1,0.1.",
                                     param_hint="--split") from None
    return value


def apply_options(options: list[Any], func: Any) -> Any:
    for option in reversed(options):
        func = option(func)
    return func


# Which data set (TrainConfig's help) and how its samples are built (DataSettings').
DATA_SOURCE = ("dataset", "data_dir", "data_options")


def data_options(func):
    """The options that choose a data set and how its samples are built."""
    return apply_options(
        [setting_option(n, field_default(n), FIELDS[n].metadata["help"]) for n in DATA_SOURCE]
        + [setting_option(n, f.default, f.metadata["help"]) for n, f in SETTINGS.items()],
        func)


def load_data(kw: dict) -> tuple[PreparedData, bool]:
    """Prepare (or reuse) the data named by ``data_options``; pops their keys from ``kw``."""
    from llara_kit.data import prepare_data

    source = {n: setting_value(n, kw.pop(n), field_default(n)) for n in DATA_SOURCE}
    options = source["data_options"] or {}
    if source["data_dir"] is not None:
        options["data_dir"] = source["data_dir"]
    given = {n: setting_value(n, kw.pop(n), f.default) for n, f in SETTINGS.items()}
    settings = DataSettings(**{n: v for n, v in given.items() if v is not None})
    dataset = source["dataset"] or field_default("dataset")
    with stderr.status(f"Preparing {dataset} ..."):
        return prepare_data(dataset, options, settings)


def key_values(items: tuple[str, ...], param_hint: str) -> dict[str, Any]:
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}``: values are JSON where they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE.", param_hint=param_hint)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.strip().replace("-", "_")] = value
    return out


@cli.group()
def data() -> None:
    """Prepare data sets and inspect prepared data."""


def _show_data(prepared: PreparedData, reused: bool, as_json: bool,
               titles: TitleCut | None = None) -> None:
    m = prepared.manifest
    if as_json:
        shown = {"path": str(prepared.path), "reused": reused, **m}
        if titles is not None:
            shown["titles"] = {"title_tokens": titles.limit, "cut": titles.cut,
                               "longest_tokens": titles.longest_tokens,
                               "longest_item": prepared.raw_item_ids[titles.longest_item]}
        click.echo(json.dumps(shown, indent=2))
        return
    table = Table(title=f"{m['dataset']} ({'reused from cache' if reused else 'prepared'})",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key in ("users", "items", "interactions", *(f"{s}_{n}" for n in ("users", "samples")
                                                    for s in ("train", "valid", "test"))):
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
    Console().print(table)


@data.command("prepare")
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def data_prepare(as_json: bool, **kw) -> None:
    """Build the split and stored candidate sets once, into the cache."""
    _show_data(*load_data(kw), as_json)


@data.command("info")
@data_options
@click.option("--llm", default=FIELDS["llm"].default, show_default=True,
              help="LLM whose tokenizer counts title tokens.")
@click.option("--title-tokens", type=click.IntRange(min=0), default=FIELDS["title_tokens"].default,
              show_default=True, help=FIELDS["title_tokens"].metadata["help"])
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def data_info(llm: str, title_tokens: int, as_json: bool, **kw) -> None:
    """Users, items, interactions, samples per split, the data hash, and how many titles a
    run would cut to --title-tokens tokens of --llm's tokenizer."""
    from llara_kit.lengths import cut_titles
    from llara_kit.llm import load_tokenizer

    prepared, reused = load_data(kw)
    _show_data(prepared, reused, as_json,
               cut_titles(prepared.titles, load_tokenizer(llm), title_tokens))


def metrics_table(title: str, columns: dict[str, dict[str, dict[str, float]]]) -> Table:
    """One row per metric, one column per method: value [95% interval]."""
    from llara_kit.metrics import format_interval

    table = Table(title=title)
    table.add_column("metric", style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    for metric in next(iter(columns.values())):
        table.add_row(metric, *(format_interval(col[metric]) if metric in col else "-"
                                for col in columns.values()))
    return table


@cli.command()
@click.option("--encoder", default="sasrec", show_default=True, help="Encoder plugin.")
@data_options
@click.option("--epochs", default=PretrainSettings.epochs, show_default=True,
              help="Most epochs; early stopping may end sooner.")
@click.option("--patience", default=PretrainSettings.patience, show_default=True,
              help="Epochs without a better validation MRR before stopping.")
@click.option("--lr", default=PretrainSettings.lr, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", default=PretrainSettings.batch_size, show_default=True)
@click.option("--weight-decay", default=PretrainSettings.weight_decay, show_default=True,
              help="Adam L2 penalty.")
@click.option("--encoder-option", multiple=True, metavar="KEY=VALUE",
              help="Encoder setting, e.g. hidden_size=64 or n_layers=1 (repeatable).")
@click.option("--force", is_flag=True, help="Train again even if a stored encoder matches.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pretrain(encoder: str, epochs: int, patience: int, lr: float, batch_size: int,
             weight_decay: float, encoder_option: tuple[str, ...], force: bool, device: str,
             as_json: bool, **kw) -> None:
    """Train a sequential recommender on the train split and score it on the test candidates."""
    from llara_kit.pretrain import pretrain_encoder
    from llara_kit.ranking import popularity_scorer, score_item_scorer

    data, _ = load_data(kw)
    seed = data.settings.seed
    settings = PretrainSettings(epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                                weight_decay=weight_decay, seed=seed)
    result = pretrain_encoder(encoder, data, key_values(encoder_option, "--encoder-option"),
                              settings, force=force, show_progress=not as_json,
                              device=device)
    report = result.report | {"path": str(result.path), "reused": result.reused}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    popularity = score_item_scorer(popularity_scorer(data), data, "test", seed=seed)
    how = "reused from" if result.reused else f"trained in {report['seconds']:.0f} s, stored in"
    Console().print(metrics_table(
        f"{encoder} on {data.manifest['dataset']} test ({len(data.splits['test'])} users, "
        f"{data.settings.candidates} candidates; full = all {data.n_items} items)",
        {encoder: report["test"], "popularity": popularity},
    ))
    Console().print(f"{encoder}: {how} {result.path}")


def config_options(func):
    """One option per TrainConfig field (see ``setting_option``)."""
    return apply_options([setting_option(f.name, field_default(f.name), f.metadata["help"])
                          for f in fields(TrainConfig)], func)


def _overrides(kw: dict[str, Any]) -> dict[str, Any]:
    """CLI values in TrainConfig form; None means "not given"."""
    return {name: setting_value(name, value, field_default(name)) for name, value in kw.items()}


@cli.command()
@config_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file whose keys are these settings.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), help="A named set of settings.")
@click.option("--full", is_flag=True, help="The paper's protocol (same as --preset paper).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: runs/<time>-<encoder>-<projector>-<schedule>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
def train(config_file: Path | None, preset: str | None, full: bool, out: Path | None,
          resume: bool, **kw) -> None:
    """Train LLaRA: LoRA on the LLM and the projector, under a curriculum."""
    from llara_kit.train import train as run_training

    cfg = resolve("paper" if full else preset, config_file, _overrides(kw))
    if out is None:
        if resume:
            raise click.UsageError("--resume needs --out naming the run folder to continue.")
        from llara_kit.distributed import launched

        if launched():
            raise click.UsageError("Launched on several processes, train needs --out naming "
                                   "the one run folder they share.")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{cfg.encoder}-{cfg.projector}-{cfg.schedule}"
    summary = run_training(cfg, out, resume=resume, console=stderr)
    table = Table(title=f"run {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), str(value))
    Console().print(table)


run_argument = click.argument("run", type=click.Path(file_okay=False, exists=True,
                                                     path_type=Path))


@cli.command("evaluate")
@run_argument
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="score", show_default=True,
              help="score: rank by the run's objective; generate: the paper's protocol; "
                   "constrained: generation limited to the candidates.")
@click.option("--zero-shot", is_flag=True, help="Evaluate the untuned LLM (text-only prompts).")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="In score mode on test: also score valid, choose the fusion weight with the "
                   "encoder there, and record the fused ranking on test (first draw only: "
                   "skipped with --draws).")
@click.option("--permutations", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score every sample under this many seeded candidate orders (the stored "
                   "one first) and report HR@1 by the target's position.")
@click.option("--draws", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score this many stored negative sets (the first is the trained run's); "
                   "metrics average over them.")
@click.option("--candidates", type=click.Choice(CANDIDATE_SOURCES), default="stored",
              show_default=True,
              help="stored: the data's stored candidates (the paper's random 20); retrieved: "
                   "re-rank the encoder's top --shortlist unseen items (whole catalogue).")
@click.option("--shortlist", default=20, show_default=True, type=click.IntRange(min=2),
              help="Items the encoder retrieves for --candidates retrieved.")
@click.option("--batch-size", default=4, show_default=True, help="Samples per batch.")
@click.option("--limit", type=int, help="Only the first N samples (a quick look).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True,
              help="Print the metrics as JSON: {method: {metric: {value, low, high}}}, and "
                   "with several orders or draws a \"layouts\" entry (by position, spread).")
def evaluate_command(run: Path, split: str, mode: str, zero_shot: bool, fuse: bool,
                     permutations: int, draws: int, candidates: str, shortlist: int,
                     batch_size: int, limit: int | None, device: str, as_json: bool) -> None:
    """Score a trained run on the stored candidates or over the whole catalogue; writes
    metrics.json and predictions."""
    from llara_kit.evaluate import evaluate
    from llara_kit.fusion import evaluate_fusion
    from llara_kit.run import load_run, zero_shot_view
    from llara_kit.run_folder import evaluating, load_metrics

    with evaluating(run):
        loaded = load_run(run, device=device, draws=draws)
        method = mode if candidates == "stored" else f"{mode}-retrieved"
        if zero_shot:
            loaded, method = zero_shot_view(loaded), f"zero-shot-{method}"
        options = dict(batch_size=batch_size, limit=limit, method=method,
                       hybrid=False if zero_shot else None, show_progress=not as_json,
                       candidates=candidates, shortlist=shortlist)
        columns = {method: evaluate(loaded, split, mode, permutations=permutations, **options)}
        details = load_metrics(run)[split][method]
        several = details.get("orders", 1) * details.get("draws", 1) > 1
        fusing = (fuse and mode == "score" and split == "test" and not zero_shot and limit is None
                  and draws == 1)
        if fusing:
            evaluate(loaded, "valid", mode, **options)
            fused = evaluate_fusion(loaded, method)
            columns[f"fused (λ={fused['lambda']})"] = fused["metrics"]
    if as_json:
        layout_info = {k: details[k] for k in ("by_position", "position_bias", "spread")
                       if several}
        click.echo(json.dumps(columns | ({"layouts": layout_info} if several else {}), indent=2))
        return
    n = limit or len(loaded.data.splits[split])
    title = f"{run.name}: {method} on {split} ({n} users)"
    if several:
        title += f", mean over {details['orders']} order(s) x {details['draws']} draw(s)"
    Console().print(metrics_table(title, columns))
    if "versus_encoder" in details:
        v = details["versus_encoder"]
        Console().print(f"top-1 differs from the encoder's for {v['top1_differs']:.1%} of the "
                        f"users; there the run is right {v['llm_right']} times, the encoder "
                        f"{v['encoder_right']} times", soft_wrap=True)
    if several:
        show_layouts(details)
    if fusing:
        key = fused["key"]
        Console().print(f"fusion weight λ={fused['lambda']} chosen on valid {key}: "
                        f"{fused[f'valid_{key}']}", soft_wrap=True)
        if candidates == "retrieved":
            from llara_kit.recommend import second_stage

            Console().print(f"recommend: {second_stage(fused['lambda'])}", soft_wrap=True)


def show_layouts(details: dict[str, Any]) -> None:
    """HR@1 by the target's position, the position-bias tests and the spread over orders
    and draws, from one method's recorded metrics."""
    pos, bias, spread = details["by_position"], details["position_bias"], details["spread"]
    table = Table(title="HR@1 by the target's candidate position (pooled over layouts)")
    for column in ("position", "samples", "HR@1", "top-1 picks"):
        table.add_column(column, justify="right")
    for i, (n, hr, share) in enumerate(zip(pos["samples"], pos["HR@1"], pos["top1_share"],
                                           strict=True)):
        table.add_row(str(i + 1), str(n), "-" if hr is None else f"{hr:.3f}", f"{share:.3f}")
    console = Console()
    console.print(table)
    console.print(f"position bias: HR@1 spread across positions {bias['HR@1_spread']:.3f} "
                  f"(χ² p={bias['HR@1_p']:.2g}); top-1 picks uniform over positions: "
                  f"χ² p={bias['top1_p']:.2g}")
    if details["orders"] > 1:
        console.print(f"HR@1 over {details['orders']} orders: widest range "
                      f"{spread['orders']['range']:.3f} "
                      f"({', '.join(f'{x:.3f}' for x in spread['orders']['HR@1'][0])} on draw 1)")
    if details["draws"] > 1:
        console.print(f"HR@1 over {details['draws']} draws: range {spread['draws']['range']:.3f} "
                      f"({', '.join(f'{x:.3f}' for x in spread['draws']['HR@1'])})")


@cli.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="score", show_default=True)
@click.option("--against", metavar="NAME",
              help="Add each row's paired HR@1 and NDCG@10 difference to this row (a name or "
                   "its start, e.g. sasrec) with a 95% interval and p-value.")
@click.option("--intervals", is_flag=True,
              help="Show [low, high] intervals in the terminal table (wider than 80 columns).")
@click.option("--candidates", type=click.Choice(CANDIDATE_SOURCES), default="stored",
              show_default=True,
              help="stored: the stored candidates; retrieved: over the whole catalogue (the "
                   "runs re-rank their encoder's shortlist; evaluate with --candidates "
                   "retrieved first).")
@click.option("--buckets", is_flag=True,
              help="With --against: the paired differences by the target's popularity in "
                   "training and by the user's history length, with bucket sizes.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown.")
def compare(runs: tuple[Path, ...], split: str, mode: str, against: str | None, intervals: bool,
            candidates: str, buckets: bool, as_json: bool, markdown: bool) -> None:
    """Baselines and runs side by side on the same candidates (like the paper's Table 2),
    or over the whole catalogue."""
    from llara_kit.compare import PAIRED, add_paired, compare_runs, find_row, table_json
    from llara_kit.compare import markdown as comparison_markdown

    if buckets and not against:
        raise click.UsageError("--buckets needs --against naming the row to compare with.")
    data, rows = compare_runs(list(runs), split, mode, candidates)
    paired = add_paired(rows, against) if against else None
    table = table_json(rows, paired)
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    if markdown:
        shown = ["HR@1", "HR@5", "NDCG@10", "MRR", "ValidRatio"]
        if paired:
            shown = [*PAIRED, *(f"Δ{m}" for m in PAIRED)]
        click.echo(comparison_markdown(table, shown))
        return
    against_name = find_row(rows, against) if against else None
    console = Console()
    console.print(terminal_table(rows, table, split, mode, data, against_name, intervals,
                                 candidates))
    if buckets:
        for _, bucket_table in bucket_tables(rows, against_name, data, split):
            console.print(bucket_table, soft_wrap=True)
    console.print(f"± is half the 95% interval{'' if intervals else ' (--intervals: [low, high])'}"
                  "; full names: --markdown", markup=False)
    for row in rows.values():
        if row.source:
            console.print(f"{row.short}: {row.source}", markup=False, soft_wrap=True)
    spreads = [f"{row.short} {max(row.draws_hr1) - min(row.draws_hr1):.3f}"
               for row in rows.values() if row.draws_hr1]
    if spreads:
        console.print(f"HR@1 range over {data.settings.draws} draws: {', '.join(spreads)}",
                      markup=False)


def terminal_table(rows: dict, table: dict, split: str, mode: str, data: PreparedData,
                   against: str | None, intervals: bool, candidates: str = "stored") -> Table:
    """The comparison in 80 columns: short labels, value ± half-interval cells."""
    from llara_kit.compare import cell, format_p, short_cell

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


def bucket_tables(rows: dict, against: str, data: PreparedData, split: str
                  ) -> list[tuple[str, Table]]:
    """One table per bucket kind: each row's paired ΔHR@1 and ΔNDCG@10 to ``against`` by
    bucket, with the bucket's size."""
    from llara_kit.buckets import bucket_differences, sample_buckets
    from llara_kit.compare import PAIRED, short_cell

    tables = []
    for kind, buckets in sample_buckets(data, split).items():
        per_metric = {m: bucket_differences({n: r.values[m] for n, r in rows.items()
                                             if m in r.values}, against, buckets)
                      for m in PAIRED}
        table = Table(title=f"Δ to {rows[against].short} by {kind}", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
        table.add_column("method", style="bold", no_wrap=True)
        first = per_metric[PAIRED[0]]
        for bucket, cells in first.items():
            for m in PAIRED:
                table.add_column(f"{bucket} (n={cells['samples']}) Δ{m}", justify="right")
        for name, row in rows.items():
            if name == against or name not in next(iter(first.values())):
                continue
            table.add_row(row.short, *(short_cell(per_metric[m][b][name])
                                       for b in first for m in PAIRED))
        tables.append((kind, table))
    return tables


@cli.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: report.html in the first run's folder).")
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="score", show_default=True)
def report(runs: tuple[Path, ...], out: Path | None, split: str, mode: str) -> None:
    """One self-contained HTML page: training curves, the comparison with intervals, HR@1 by
    candidate position, config and data hash. Needs matplotlib (the report extra)."""
    from llara_kit.report import write_report  # matplotlib: only this command needs it

    path = write_report(list(runs), out or runs[0] / "report.html", split, mode)
    click.echo(f"report: {path.resolve()}")


@cli.command()
@run_argument
@click.option("--history", "history", multiple=True, required=True, metavar="ITEM",
              help="A history item (title or raw id), oldest first; repeatable.")
@click.option("--candidates", "candidates", multiple=True, metavar="ITEM",
              help="A candidate (title or raw id); repeatable. Default: the encoder's shortlist.")
@click.option("--top-k", default=10, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True)
def recommend(run: Path, history: tuple[str, ...], candidates: tuple[str, ...], top_k: int,
              device: str, as_json: bool) -> None:
    """Rank items for a history: the given candidates, or every unseen item via the encoder."""
    from llara_kit.recommend import Recommender

    recommender = Recommender.from_run(run, device=device)
    recs = recommender.recommend(list(history), list(candidates) or None, top_k)
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in recs], indent=2))
        return
    table = Table(title="recommendations")
    for col in ("rank", "item", "title", "score"):
        table.add_column(col)
    for i, r in enumerate(recs, 1):
        table.add_row(str(i), r.item, r.title, f"{r.score:.3f}")
    Console().print(table)
    Console().print(f"ranked by {recommender.stage}", soft_wrap=True)


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(SCAFFOLD_KINDS), required=True,
              help="The kind of component the plugin provides.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Folder to create the package in.")
def new_plugin(name: str, kind: str, parent: Path) -> None:
    """Write a working, tested plugin package NAME providing one KIND component NAME."""
    folder = write_plugin(name, kind, parent)
    click.echo(f"wrote {folder}/ (pyproject.toml, {name.replace('-', '_')}.py, tests/, "
               f"README.md); next:\n  pip install -e {folder}\n  pytest {folder}\n"
               "  llara-kit list-plugins")


def main() -> None:
    """Console-script entry point: attach plugin commands, then run."""
    # Library chatter that says nothing to a llara-kit user: per-file loading bars (read
    # when transformers is imported, by the commands that need it), and a deprecation inside
    # peft/transformers that their next releases resolve.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if int(os.environ.get("RANK", "0")) > 0:  # launched processes: rank 0 prints the results
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    try:
        load_plugins().add_commands(cli)
    except LlaraKitError as exc:
        stderr.print(f"[red]Error:[/] {exc}")
        raise SystemExit(1) from exc
    cli()
