"""The plugin manager with real pluggy and real distributions (no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import llara_kit

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from llara_kit.errors import PluginError, UnknownComponentError
from llara_kit.plugins import DEFAULT_PLUGINS, DISABLE_AUTOLOAD_ENV, PluginHost, PluginInfo

REPO = Path(__file__).resolve().parents[1]

GOOD_PLUGIN = """
    from torch import nn
    from llara_kit import hookimpl

    class Halve(nn.Linear):
        pass

    @hookimpl
    def register_projectors(register):
        register("acme-halve", Halve, description="test projector")
"""


def test_builtins_are_registered_and_healthy():
    host = PluginHost(entry_points=False)
    assert set(host.plugins) == set(DEFAULT_PLUGINS)
    assert all(info.status == "ok" for info in host.plugins.values())
    assert host.registries["projector"].names() == ["linear", "mlp"]
    assert host.registries["schedule"].names() == [
        "cosine", "hybrid-only", "linear", "text-only", "two-stage",
    ]
    comp = host.registries["projector"].get("mlp")
    assert comp.plugin == "llara_kit.components" and comp.kind == "projector"


def test_unknown_name_lists_available():
    with pytest.raises(UnknownComponentError) as err:
        llara_kit.get_projector("mpl")
    assert str(err.value) == "Unknown projector 'mpl'. Available: linear, mlp."


def test_duplicate_component_is_refused_naming_both_plugins():
    class Clash:
        @llara_kit.hookimpl
        def register_projectors(self, register):
            register("mlp", object)

    host = PluginHost(entry_points=False)
    info = PluginInfo("clash", "0.0", "clash-dist")
    host.add_plugin(Clash(), info)
    assert info.status == "broken"
    assert "'llara_kit.components'" in info.error and "'clash'" in info.error
    # the built-in stays, the clashing plugin contributes nothing
    assert host.registries["projector"].get("mlp").plugin == "llara_kit.components"
    assert info.components == {}


@pytest.fixture
def projectors_copy(monkeypatch):
    """A second built-in module registering the same projectors as llara_kit.components."""
    import sys
    import types

    from llara_kit import components

    module = types.ModuleType("llara_kit.projectors_copy_for_test")
    module.register_projectors = components.register_projectors
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def test_duplicate_between_builtins_is_an_error(projectors_copy):
    with pytest.raises(PluginError, match="both provide the projector 'linear'"):
        PluginHost(("llara_kit.components", projectors_copy), entry_points=False)


def test_lazy_factories_import_on_first_use_and_name_a_bad_target(monkeypatch):
    class Lazy:
        @llara_kit.hookimpl
        def register_projectors(self, register):
            register("later", "llara_kit.model.projectors:MLPProjector")
            register("missing", "llara_kit.model.projectors:NoSuchProjector")

    monkeypatch.delitem(sys.modules, "llara_kit.model.projectors", raising=False)
    host = PluginHost(entry_points=False)
    host.add_plugin(Lazy(), info := PluginInfo("lazy", "0.0", "lazy-dist"))
    assert info.status == "ok" and "llara_kit.model.projectors" not in sys.modules
    assert host.registries["projector"].get("later").factory.__name__ == "MLPProjector"
    assert "llara_kit.model.projectors" in sys.modules
    with pytest.raises(PluginError, match="'llara_kit.model.projectors:NoSuchProjector', which "
                                          "cannot be imported"):
        _ = host.registries["projector"].get("missing").factory


@pytest.mark.parametrize("args", [["--help"], ["list-plugins"]])
def test_help_and_listing_import_no_torch(args):
    """`llara-kit --help` and `list-plugins` stay fast: no torch, transformers or peft, with
    installed plugins loaded (the bert4rec distribution that `make setup` installs)."""
    code = ("import sys; from llara_kit.cli import cli; "
            "cli.main(sys.argv[1:], standalone_mode=False); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True, env=env | {"COLUMNS": "120"}).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert ("llara-kit-bert4rec" in out) == (args == ["list-plugins"])
    assert "Commands:" in out or "encoder: bert4rec" in out


def test_misspelt_hook_names_the_plugin():
    class Typo:
        @llara_kit.hookimpl
        def register_projector(self, register):  # missing "s"
            register("x", object)

    host = PluginHost(entry_points=False)
    info = PluginInfo("typo", "0.0", "typo-dist")
    host.add_plugin(Typo(), info)
    assert info.error.startswith("Plugin 'typo' implements unknown hook 'register_projector'")


def test_unknown_hook_argument_names_the_plugin():
    class ExtraArg:
        @llara_kit.hookimpl
        def register_schedules(self, register, options):
            pass

    host = PluginHost(entry_points=False)
    info = PluginInfo("extra", "0.0", "extra-dist")
    host.add_plugin(ExtraArg(), info)
    assert "Plugin 'extra'" in info.error and "options" in info.error


def test_entry_point_plugin_is_discovered_listed_and_looked_up(install_dist):
    install_dist("acme-llara", {"acme": "acme_llara"}, {"acme_llara.py": GOOD_PLUGIN})
    host = PluginHost(entry_points=True)
    info = host.plugins["acme"]
    assert (info.status, info.version, info.source) == ("ok", "1.2.3", "acme-llara")
    assert info.components == {"projector": ["acme-halve"]}
    factory = host.registries["projector"].get("acme-halve").factory
    assert factory(4, 2).weight.shape == (2, 4)


def test_broken_entry_point_plugin_is_reported_not_fatal(install_dist):
    install_dist(
        "acme-broken", {"broken": "acme_broken"},
        {"acme_broken.py": "import a_module_that_does_not_exist\n"},
    )
    host = PluginHost(entry_points=True)
    info = host.plugins["broken"]
    assert info.status == "broken"
    assert "could not be imported" in info.error and "a_module_that_does_not_exist" in info.error
    assert "mlp" in host.registries["projector"]  # the rest keeps working


def test_plugin_failing_inside_its_hook_is_reported(install_dist):
    install_dist("acme-raise", {"raiser": "acme_raise"}, {"acme_raise.py": """
        from llara_kit import hookimpl

        @hookimpl
        def register_schedules(register):
            register("fine", lambda: None)
            raise RuntimeError("boom")
    """})
    host = PluginHost(entry_points=True)
    info = host.plugins["raiser"]
    assert info.status == "broken" and "boom" in info.error
    assert "fine" not in host.registries["schedule"]


def test_env_var_disables_entry_points(install_dist, monkeypatch):
    install_dist("acme-llara", {"acme": "acme_llara"}, {"acme_llara.py": GOOD_PLUGIN})
    assert "acme" not in PluginHost().plugins  # conftest sets the variable
    monkeypatch.setenv("LLARA_KIT_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert "acme" in PluginHost().plugins


IN_REPO = {"llara-kit-lowrank": ("lowrank", "projector"),
           "llara-kit-bert4rec": ("bert4rec", "encoder")}


@pytest.mark.parametrize("dist", sorted(IN_REPO))
def test_in_repo_plugin_packages_are_discovered(install_dist, monkeypatch, dist):
    """plugins/<dist>: its pyproject's entry point loads its module, listed under its
    distribution and version, and the factory it names builds."""
    import torch

    name, kind = IN_REPO[dist]
    package = REPO / "plugins" / dist
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    sources = {p.relative_to(package).as_posix(): p.read_text() for p in package.rglob("*.py")
               if "tests" not in p.relative_to(package).parts}
    for module in ("llara_kit_lowrank", "llara_kit_bert4rec", "llara_kit_bert4rec.model"):
        monkeypatch.delitem(sys.modules, module, raising=False)  # import this copy
    install_dist(project["name"], project["entry-points"]["llara_kit"], sources,
                 version=project["version"])
    host = PluginHost(entry_points=True)
    info = host.plugins[name]
    assert (info.source, info.version, info.status) == (dist, project["version"], "ok")
    assert info.components == {kind: [name]}
    factory = host.registries[kind].get(name).factory
    built = factory.from_options(n_items=10) if kind == "encoder" else factory(64, 576)
    assert isinstance(built, torch.nn.Module)


def test_bad_component_name_is_refused():
    class BadName:
        @llara_kit.hookimpl
        def register_schedules(self, register):
            register("Has Spaces", lambda: None)

    host = PluginHost(entry_points=False)
    info = PluginInfo("bad", "0.0", "bad-dist")
    host.add_plugin(BadName(), info)
    assert "'Has Spaces'" in info.error


def test_a_lazy_factory_that_cannot_be_imported_stops_train_with_one_line(llara_plugin):
    from click.testing import CliRunner

    from llara_kit.cli import cli

    class Lazy:
        @llara_kit.hookimpl
        def register_encoders(self, register):
            register("ghost", "ghost_package.model:Ghost")

    llara_plugin(Lazy(), "ghost-plugin")
    result = CliRunner().invoke(cli, ["train", "--encoder", "ghost"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: Plugin 'ghost-plugin' registered the encoder 'ghost' as "
        "'ghost_package.model:Ghost', which cannot be imported (ModuleNotFoundError: No module "
        "named 'ghost_package'); reinstall the plugin or fix its register call."]
