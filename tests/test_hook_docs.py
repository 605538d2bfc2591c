"""Every hook is documented under its exact signature and has its own test (datasette's rule)."""

import inspect
import re
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import llara_kit
from llara_kit import hookspecs
from llara_kit.cli import cli
from llara_kit.model.objectives import HeadObjective
from llara_kit.model.schedules import LinearSchedule
from llara_kit.plugins import PluginHost, PluginInfo

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("register_") and callable(f))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook, monkeypatch):
    """Documented under its signature, and its test calls it on a plugin's implementation."""
    args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    docs = (ROOT / "docs" / "plugin-hooks.md").read_text()
    headings = re.findall(r"^## (.+)$", docs, re.MULTILINE)
    assert f"{hook}({args})" in headings
    assert getattr(hookspecs, hook).__doc__
    called: set[str] = set()
    call = PluginHost._call_plugin_hook

    def recording(host, info, hook_name, **kw):
        impls = getattr(host.pm.hook, hook_name).get_hookimpls()
        if info.name == "acme" and any(i.plugin_name == "acme" for i in impls):
            called.add(hook_name)
        return call(host, info, hook_name, **kw)

    monkeypatch.setattr(PluginHost, "_call_plugin_hook", recording)
    globals()[f"test_hook_{hook}"]()
    assert hook in called, f"test_hook_{hook} never calls {hook} on the acme plugin"


def _host_with(plugin) -> tuple[PluginHost, PluginInfo]:
    host = PluginHost(entry_points=False)
    info = PluginInfo("acme", "1.0", "acme-dist")
    host.add_plugin(plugin, info)
    assert info.error is None, info.error
    return host, info


def _registers(kind: str, factory):
    """A plugin object implementing register_<kind>s with one component ``acme``."""

    class Plugin:
        pass

    def hook(register):
        register("acme", factory, description=f"an {kind}")

    setattr(Plugin, f"register_{kind}s", staticmethod(llara_kit.hookimpl(hook)))
    return Plugin()




def _check_registers(kind: str, factory) -> PluginHost:
    host, info = _host_with(_registers(kind, factory))
    assert info.components == {kind: ["acme"]}
    comp = host.registries[kind].get("acme")
    assert (comp.factory, comp.plugin, comp.description) == (factory, "acme", f"an {kind}")
    return host


def test_hook_register_encoders():
    _check_registers("encoder", torch.nn.Embedding)


def test_hook_register_projectors():
    host = _check_registers("projector", torch.nn.Linear)
    assert host.registries["projector"].names() == ["acme", "linear", "mlp"]


def test_hook_register_templates():
    _check_registers("template", str.format)


def test_template_from_the_docs_keeps_the_contract_and_takes_options(llara_plugin, tmp_path):
    from types import SimpleNamespace

    from helpers import tiny_llm_folder, write_cycle_files

    from llara_kit.testing import check_template

    docs = (ROOT / "docs" / "plugin-hooks.md").read_text()
    section = docs.split("## register_templates(register)")[1].split("\n## ")[0]
    namespace: dict = {}
    exec(section.split("```python\n")[1].split("```")[0], namespace)
    llara_plugin(SimpleNamespace(register_templates=namespace["register_templates"]), "docs-pod")
    check_template("podcast")
    check_template("podcast", style="terse")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--template", "podcast", "--template-option", "style=terse",
        "--dataset", "csv", "--data-dir", str(write_cycle_files(tmp_path / "cycle")),
        "--llm", str(tiny_llm_folder()), "--history", "5", "--candidates", "10",
        "--split", "0.6,0.2,0.2", "--max-train-samples", "4", "--batch-size", "4",
        "--grad-accum", "1", "--precision", "fp32", "--encoder-option", "hidden_size=16",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    from llara_kit.run import load_run

    run = load_run(out)
    assert run.config.template_options == {"style": "terse"}
    assert run.template.render(["", "A", "B"], [1], [2], False).text.startswith("A [PH]. Which")


def test_hook_register_schedules():
    host = _check_registers("schedule", LinearSchedule)
    assert host.registries["schedule"].get("acme").factory()(0.25) == 0.25


def test_hook_register_datasets():
    _check_registers("dataset", dict)


def test_hook_register_objectives():
    host = _check_registers("objective", HeadObjective)
    assert host.registries["objective"].names() == ["acme", "head", "title"]
    objective = host.registries["objective"].get("acme").factory(8)
    assert objective.answer("Heat") is None and sum(p.numel() for p in objective.parameters()) == 9


def test_hook_register_commands():
    class Plugin:
        @llara_kit.hookimpl
        def register_commands(self, cli):
            @cli.command("acme-hello")
            def hello():
                click.echo("hello from acme")

    host, _ = _host_with(Plugin())
    group = click.Group(commands=dict(cli.commands))  # a copy: leave the real CLI untouched
    host.add_commands(group)
    result = CliRunner().invoke(group, ["acme-hello"])
    assert result.output == "hello from acme\n"
