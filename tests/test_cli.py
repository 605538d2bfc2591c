"""The CLI through Click's CliRunner."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from helpers import terminal, unstyled

from llara_kit import __version__
from llara_kit.cli import cli

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_list_plugins_table():
    result = CliRunner().invoke(cli, ["list-plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "llara_kit.components" in result.output and "built-in" in result.output
    assert "projector: linear, mlp" in result.output
    assert "two-stage" in result.output


def test_list_plugins_fits_an_80_column_terminal_with_whole_names():
    result = CliRunner().invoke(cli, ["list-plugins"], env=terminal(80))
    lines = unstyled(result.output).splitlines()
    assert max(map(len, lines)) <= 80
    for name in ("llara_kit.components", "llara_kit.data.sources", "llara_kit.data.public"):
        assert any(name in line for line in lines), name


def test_off_a_terminal_tables_keep_every_cell_and_line():
    """A log file or a pipe: the widths of a terminal do not apply, nothing wraps or is cut."""
    result = CliRunner().invoke(cli, ["list-plugins"], env={"COLUMNS": "40"})
    lines = result.output.splitlines()
    assert max(map(len, lines)) > 80 and "…" not in result.output
    row = next(x for x in lines if "llara_kit.components" in x)
    assert "encoder: sasrec, gru4rec, caser" in row  # one line per plugin


def test_the_docs_say_what_the_code_does():
    from llara_kit.plugins import KINDS
    from llara_kit.training.train import RESUMABLE

    cli_md = (DOCS / "cli.md").read_text()
    assert f"new-plugin NAME --kind {'|'.join(KINDS)} " in cli_md
    training = " ".join((DOCS / "training.md").read_text().split())
    allowed = training.split("continues from it with the same settings (only ")[1].split(
        " may change")[0]
    named = {"device": "device", "precision": "precision", "checkpoint_every":
             "checkpoint interval", "gradient_checkpointing": "gradient checkpointing",
             "compile": "`--compile`", "max_prompt_tokens": "`--max-prompt-tokens`"}
    assert set(named) == RESUMABLE and all(named[k] in allowed for k in RESUMABLE)
    unknown = CliRunner().invoke(cli, ["train", "--no-such-option"])
    assert unknown.exit_code == 2 and unknown.output.startswith("Usage: ")
    assert "1 for an error" in cli_md and "2 for a usage error" in cli_md


def test_list_plugins_json():
    result = CliRunner().invoke(cli, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["llara_kit.components"]["components"] == {
        "encoder": ["sasrec", "gru4rec", "caser"], "projector": ["linear", "mlp"],
        "objective": ["title", "head"]}
    assert plugins["llara_kit.model.schedules"]["status"] == "ok"
    assert plugins["llara_kit.model.schedules"]["source"] == "built-in"


# A library that, once the command runs, logs to standard output (as DeepSpeed does when a
# model is saved with it installed).
NOISY_LIBRARY = """
import logging, sys
from llara_kit import cli
plain = cli.load_plugins
def load_plugins():
    log = logging.getLogger("noisy")
    log.addHandler(logging.StreamHandler(sys.stdout))
    log.warning("library chatter")
    return plain()
cli.load_plugins = load_plugins
sys.argv = ["llara-kit", "list-plugins", "--json"]
cli.main()
"""


# A plugin whose command prints with click.echo.
PLUGIN_COMMAND = """
import sys, click
from llara_kit import cli
plain = cli.load_plugins
def load_plugins():
    host = plain()
    host.add_commands = lambda group: group.command("hello")(lambda: click.echo("hello"))
    return host
cli.load_plugins = load_plugins
sys.argv = ["llara-kit", "hello"]
cli.main()
"""


def test_results_keep_stdout_to_themselves():
    done = subprocess.run([sys.executable, "-c", NOISY_LIBRARY], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "llara_kit.components" in {p["name"] for p in json.loads(done.stdout)}
    assert "library chatter" in done.stderr
    plugin = subprocess.run([sys.executable, "-c", PLUGIN_COMMAND], capture_output=True,
                            text=True, timeout=60)
    assert (plugin.returncode, plugin.stdout) == (0, "hello\n"), plugin.stderr


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == f"llara-kit, version {__version__}"
    help_text = runner.invoke(cli, ["--help"]).output
    assert "list-plugins" in help_text


def test_version_comes_from_the_installed_metadata():
    from importlib import metadata

    import llara_kit

    assert llara_kit.__version__ == metadata.version("llara-kit")
