"""The ``llara-kit`` command line: thin Click commands over the library."""

from __future__ import annotations

import errno
import json
import os
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console

from llara_kit import render
from llara_kit.config import (
    CANDIDATE_SOURCES,
    DEVICE_HELP,
    FIELDS,
    MODES,
    PRESETS,
    PretrainSettings,
    resolve,
)
from llara_kit.data.settings import EVALUATION_SPLITS
from llara_kit.errors import LlaraKitError
from llara_kit.options import config_options, data_options, data_request, key_values, overrides
from llara_kit.plugins import KINDS, load_plugins
from llara_kit.scaffold import write_plugin
from llara_kit.storage import HOME_ENV
from llara_kit.version import VERSION

# Commands import torch, transformers and the model stack when they run, never at start:
# `llara-kit --help` and `list-plugins` answer in well under a second.

stderr = Console(stderr=True)


class _Group(click.Group):
    """Turns LlaraKitError, and a full disk or a folder it may not write, into one clear line
    and exit status 1, never a traceback."""

    plugin_commands: frozenset[str] = frozenset()  # the commands plugins added (``main``)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if name in self.plugin_commands:
            render.restore_stdout()  # a plugin's command prints as any Click command does
        return name, command, rest

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LlaraKitError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if exc.errno not in _FIXES:
                raise
            raise click.ClickException(
                file_system_message(exc, resumable=ctx.invoked_subcommand == "train")) from exc


# A full disk, a read-only file system, missing permissions: the user's to fix.
_FIXES = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
          errno.EROFS: "it is read-only", errno.EACCES: "check its permissions",
          errno.EPERM: "check its permissions"}


def file_system_message(exc: OSError, resumable: bool = False) -> str:
    where = f" at {exc.filename}" if exc.filename else ""
    then = ("; then `train` with the same --out and --resume continues from the last "
            "checkpoint" if resumable else "")
    return (f"{exc.strerror}{where}; {_FIXES[exc.errno]}, or point --out / ${HOME_ENV} at a "
            "writable folder (what was written before is intact: every write goes to a "
            f"temporary file first){then}.")


def echo(text: str) -> None:
    """Print a command's result (see ``render.results``)."""
    click.echo(text, file=render.results())


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
        echo(json.dumps(plugins, indent=2))
        return
    render.stdout().print(render.plugins_table(plugins, KINDS))


@cli.group()
def data() -> None:
    """Prepare data sets and inspect prepared data."""


def load_data(kw: dict):
    """Prepare (or reuse) the data named by ``data_options``: (PreparedData, reused)."""
    from llara_kit.data import prepare_data

    dataset, options, settings = data_request(kw)
    with stderr.status(f"Preparing {dataset} ..."):
        return prepare_data(dataset, options, settings)


def show_data(kw: dict, as_json: bool, titles_of=None) -> None:
    """The prepared data (and, with ``titles_of(prepared)``, how titles are cut)."""
    prepared, reused = load_data(kw)
    titles = titles_of(prepared) if titles_of else None
    if as_json:
        echo(json.dumps(render.data_json(prepared, reused, titles), indent=2))
    else:
        render.stdout().print(render.data_table(prepared, reused, titles))


@data.command("prepare")
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def data_prepare(as_json: bool, **kw) -> None:
    """Build the split and stored candidate sets once, into the cache."""
    show_data(kw, as_json)


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
    from llara_kit.model.lengths import cut_titles
    from llara_kit.model.llm import load_tokenizer

    show_data(kw, as_json,
              lambda prepared: cut_titles(prepared.titles, load_tokenizer(llm), title_tokens))


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
@click.option("--sampled-softmax", default=PretrainSettings.sampled_softmax, show_default=True,
              help="Sampled softmax over this many items drawn per batch, for catalogues whose "
                   "(batch x items) logits do not fit; 0: the exact softmax over every item.")
@click.option("--encoder-option", multiple=True, metavar="KEY=VALUE",
              help="Encoder setting, e.g. hidden_size=64 or n_layers=1 (repeatable).")
@click.option("--force", is_flag=True, help="Train again even if a stored encoder matches.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pretrain(encoder: str, epochs: int, patience: int, lr: float, batch_size: int,
             weight_decay: float, sampled_softmax: int, encoder_option: tuple[str, ...],
             force: bool, device: str, as_json: bool, **kw) -> None:
    """Train a sequential recommender on the train split and score it on the test candidates."""
    from llara_kit.encoders.pretrain import popularity_baseline, pretrain_encoder

    data, _ = load_data(kw)
    settings = PretrainSettings(epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                                weight_decay=weight_decay, sampled_softmax=sampled_softmax,
                                seed=data.settings.seed)
    result = pretrain_encoder(encoder, data, key_values(encoder_option, "--encoder-option"),
                              settings, force=force, show_progress=not as_json,
                              device=device)
    report = result.report | {"path": str(result.path), "reused": result.reused}
    if as_json:
        echo(json.dumps(report, indent=2))
        return
    how = "reused from" if result.reused else f"trained in {report['seconds']:.0f} s, stored in"
    render.stdout().print(render.metrics_table(
        f"{encoder} on {data.manifest['dataset']} test ({len(data.splits['test'])} users, "
        f"{data.settings.candidates} candidates; full = all {data.n_items} items)",
        {encoder: report["test"], "popularity": popularity_baseline(data)},
    ))
    render.stdout().print(f"{encoder}: {how} {result.path}")


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
    from llara_kit.distributed import launched
    from llara_kit.run_folder import default_run_dir
    from llara_kit.training.train import train as run_training

    cfg = resolve("paper" if full else preset, config_file, overrides(kw))
    if out is None:
        if resume:
            raise click.UsageError("--resume needs --out naming the run folder to continue.")
        if launched():
            raise click.UsageError("Launched on several processes, train needs --out naming "
                                   "the one run folder they share.")
        out = default_run_dir(cfg)
    summary = run_training(cfg, out, resume=resume, console=stderr)
    render.stdout().print(render.key_value_table(f"run {out}", summary))


run_argument = click.argument("run", type=click.Path(file_okay=False, exists=True,
                                                     path_type=Path))


@cli.command("evaluate")
@run_argument
@click.option("--split", type=click.Choice(EVALUATION_SPLITS), default="test", show_default=True,
              help="valid or test; with --new-items data also the new-item splits "
                   "(valid-new, test-new: 19 random negatives; -only: negatives among new items).")
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
    from llara_kit.evaluation.assessment import assess
    from llara_kit.evaluation.recommend import second_stage

    done = assess(run, split, mode, zero_shot=zero_shot, fuse=fuse, permutations=permutations,
                  draws=draws, candidates=candidates, shortlist=shortlist,
                  batch_size=batch_size, limit=limit, device=device, show_progress=not as_json)
    result, fused = done.result, done.fusion
    columns = {result.method: result.metrics}
    if fused is not None:
        columns[f"fused (λ={fused.lam})"] = fused.metrics
    several = result.n_layouts > 1
    if as_json:
        layout_info = {k: result.info[k] for k in ("by_position", "position_bias", "spread")
                       if several}
        echo(json.dumps(columns | ({"layouts": layout_info} if several else {}), indent=2))
        return
    console = render.stdout()
    title = f"{run.name}: {result.method} on {split} ({len(result.targets)} users)"
    if several:
        title += (f", mean over {result.info['orders']} order(s) x {result.info['draws']} "
                  "draw(s)")
    console.print(render.metrics_table(title, columns))
    if "versus_encoder" in result.info:
        console.print(render.versus_encoder_line(result.info["versus_encoder"]), soft_wrap=True)
    if several:
        for part in render.layout_report(result):
            console.print(part)
    if fused is not None:
        console.print(render.fusion_line(fused), soft_wrap=True)
        if candidates == "retrieved":
            console.print(f"recommend: {second_stage(fused.lam)}", soft_wrap=True)


@cli.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--split", type=click.Choice(EVALUATION_SPLITS), default="test", show_default=True,
              help="valid or test; with --new-items data also the new-item splits "
                   "(valid-new, test-new: 19 random negatives; -only: negatives among new items).")
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
    from llara_kit.evaluation.compare import (
        PAIRED,
        add_paired,
        bucket_comparison,
        compare_runs,
        find_row,
        table_json,
    )

    if buckets and not against:
        raise click.UsageError("--buckets needs --against naming the row to compare with.")
    data, rows = compare_runs(list(runs), split, mode, candidates)
    paired = add_paired(rows, against) if against else None
    table = table_json(rows, paired)
    if as_json:
        echo(json.dumps(table, indent=2))
        return
    if markdown:
        shown = ["HR@1", "HR@5", "NDCG@10", "MRR", "ValidRatio"]
        if paired:
            shown = [*PAIRED, *(f"Δ{m}" for m in PAIRED)]
        echo(render.markdown(table, shown))
        return
    against_name = find_row(rows, against) if against else None
    console = render.stdout()
    console.print(render.comparison_table(rows, table, split, mode, data, against_name,
                                          intervals, candidates))
    if buckets:
        for kind, per_metric in bucket_comparison(rows, against_name, data, split).items():
            console.print(render.bucket_table(kind, per_metric, rows, against_name),
                          soft_wrap=True)
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


@cli.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: report.html in the first run's folder).")
@click.option("--split", type=click.Choice(EVALUATION_SPLITS), default="test", show_default=True,
              help="valid or test; with --new-items data also the new-item splits "
                   "(valid-new, test-new: 19 random negatives; -only: negatives among new items).")
@click.option("--mode", type=click.Choice(MODES), default="score", show_default=True)
def report(runs: tuple[Path, ...], out: Path | None, split: str, mode: str) -> None:
    """One self-contained HTML page: training curves, the comparison with intervals, HR@1 by
    candidate position, config and data hash. Needs matplotlib (the report extra)."""
    from llara_kit.evaluation.report import write_report  # matplotlib: only this command needs it

    path = write_report(list(runs), out or runs[0] / "report.html", split, mode)
    echo(f"report: {path.resolve()}")


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
    from llara_kit.evaluation.recommend import Recommender

    recommender = Recommender.from_run(run, device=device)
    recs = recommender.recommend(list(history), list(candidates) or None, top_k)
    if as_json:
        echo(json.dumps([r.__dict__ for r in recs], indent=2))
        return
    console = render.stdout()
    console.print(render.recommendations_table(recs))
    console.print(f"ranked by {recommender.stage}", soft_wrap=True)


@cli.command()
@run_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free one, printed).")
@click.option("--max-batch", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Waiting requests scored together at most (1: one at a time).")
@click.option("--max-wait-ms", type=click.FloatRange(0, 10000), default=0.0, show_default=True,
              help="How long a batch waits to fill (0: it takes the requests already waiting).")
@click.option("--max-queue", type=click.IntRange(1), default=64, show_default=True,
              help="Requests waiting at most; more are answered 503 with Retry-After.")
@click.option("--max-body-kb", type=click.IntRange(1), default=64, show_default=True,
              help="Largest request body, in KiB (larger: 413).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
def serve(run: Path, host: str, port: int, max_batch: int, max_wait_ms: float,
          max_queue: int, max_body_kb: int, device: str, access_log: bool) -> None:
    """Serve RUN over HTTP: POST /recommend, GET /items, /health, /info, a page at /."""
    try:
        from llara_kit.serving.app import ServeSettings
        from llara_kit.serving.server import serve as run_server
    except ModuleNotFoundError as error:  # an extra: only this command needs it
        if error.name not in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise
        raise LlaraKitError(f"`llara-kit serve` needs FastAPI and uvicorn ({error.name} is not "
                            "installed); install them with: pip install 'llara-kit[serve]'"
                            ) from None

    settings = ServeSettings(max_batch, max_wait_ms, max_queue, max_body_kb * 1024)
    run_server(run, host, port, settings, device, access_log, stderr)


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True,
              help="The kind of component the plugin provides.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Folder to create the package in.")
def new_plugin(name: str, kind: str, parent: Path) -> None:
    """Write a working, tested plugin package NAME providing one KIND component NAME."""
    folder = write_plugin(name, kind, parent)
    echo(f"wrote {folder}/ (pyproject.toml, {name.replace('-', '_')}.py, tests/, "
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
    render.keep_stdout_for_results()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    built_in = set(cli.commands)
    try:
        load_plugins().add_commands(cli)
    except LlaraKitError as exc:
        stderr.print(f"[red]Error:[/] {exc}")
        raise SystemExit(1) from exc
    cli.plugin_commands = frozenset(cli.commands) - built_in
    cli()
