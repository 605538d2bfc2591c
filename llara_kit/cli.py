"""The ``llara-kit`` command line: thin Click commands over the library."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from llara_kit import __version__
from llara_kit.errors import LlaraKitError
from llara_kit.plugins import KINDS, load_plugins

stderr = Console(stderr=True)


class _Group(click.Group):
    """Turns LlaraKitError into one clear line and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LlaraKitError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llara-kit")
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
    for column in ("plugin", "version", "source", "status", "components"):
        table.add_column(column)
    for p in plugins:
        status = "[green]ok[/]" if p["status"] == "ok" else f"[red]broken[/]: {p['error']}"
        provided = p["components"]
        components = "\n".join(
            f"{kind}: {', '.join(provided[kind])}" for kind in KINDS if kind in provided
        )
        table.add_row(p["name"], p["version"], p["source"], status, components or "-")
    Console().print(table)


def main() -> None:
    """Console-script entry point: attach plugin commands, then run."""
    try:
        load_plugins().add_commands(cli)
    except LlaraKitError as exc:
        stderr.print(f"[red]Error:[/] {exc}")
        raise SystemExit(1) from exc
    cli()
