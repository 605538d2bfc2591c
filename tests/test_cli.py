"""The CLI through Click's CliRunner."""

import json

from click.testing import CliRunner

from llara_kit import __version__
from llara_kit.cli import cli


def test_list_plugins_table():
    result = CliRunner().invoke(cli, ["list-plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "llara_kit.components" in result.output and "built-in" in result.output
    assert "projector: linear, mlp" in result.output
    assert "two-stage" in result.output


def test_list_plugins_fits_80_columns_with_whole_names():
    result = CliRunner().invoke(cli, ["list-plugins"], env={"COLUMNS": "80"})
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    for name in ("llara_kit.components", "llara_kit.data.sources", "llara_kit.data.public"):
        assert any(name in line for line in lines), name


def test_list_plugins_json():
    result = CliRunner().invoke(cli, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["llara_kit.components"]["components"] == {
        "encoder": ["sasrec", "gru4rec", "caser"], "projector": ["linear", "mlp"],
        "objective": ["title", "head"]}
    assert plugins["llara_kit.model.schedules"]["status"] == "ok"
    assert plugins["llara_kit.model.schedules"]["source"] == "built-in"


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == f"llara-kit, version {__version__}"
    help_text = runner.invoke(cli, ["--help"]).output
    assert "list-plugins" in help_text


def test_version_comes_from_the_installed_metadata():
    from importlib import metadata

    import llara_kit

    assert llara_kit.__version__ == metadata.version("llara-kit")
