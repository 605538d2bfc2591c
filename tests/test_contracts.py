"""Every built-in and in-repo plugin through the contract checks of llara_kit.testing, which
pytest loads as a plugin (the pytest11 entry point)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import tiny_llm_folder, write_cycle_files
from test_public_data import write_amazon, write_lastfm, write_steam

from llara_kit import testing
from llara_kit.plugins import PluginHost, load_plugins

REPO = Path(__file__).resolve().parents[1]
BUILTIN = PluginHost(entry_points=False).registries


@pytest.mark.parametrize("name", BUILTIN["projector"].names())
def test_projectors(name):
    testing.check_projector(name)


@pytest.mark.parametrize("name", BUILTIN["schedule"].names())
def test_schedules(name):
    testing.check_schedule(name)


@pytest.mark.parametrize("name", BUILTIN["template"].names())
def test_templates(name):
    testing.check_template(name)


@pytest.mark.parametrize("name", BUILTIN["objective"].names())
def test_objectives(name, tmp_path):
    testing.check_objective(name, llm=str(tiny_llm_folder()))


def test_an_objective_whose_loss_misses_its_weights_is_caught(llara_plugin, tmp_path):
    from torch import nn

    from llara_kit import hookimpl
    from llara_kit.model.objectives import HeadObjective

    class DeafHead(HeadObjective):
        def __init__(self, hidden_size):
            super().__init__(hidden_size)
            self.unused = nn.Linear(2, 2)

    llara_plugin(SimpleNamespace(register_objectives=hookimpl(
        lambda register: register("deaf", DeafHead))), "deaf")
    with pytest.raises(AssertionError, match="deaf: the loss must reach the objective's own"):
        testing.check_objective("deaf", llm=str(tiny_llm_folder()))


WRITERS = {"csv": write_cycle_files, "lastfm": write_lastfm, "steam": write_steam,
           "amazon": lambda folder: write_amazon(folder, 2023)}


@pytest.mark.parametrize("name", BUILTIN["dataset"].names())
def test_datasets(name, tmp_path):
    if name in ("ml-100k", "recbole"):  # the copy shipped in the recbole package
        from llara_kit.data.sources import _recbole_example_dir

        folder = None if name == "ml-100k" else _recbole_example_dir("ml-100k")
    elif name == "ml-1m":
        folder = tmp_path / "ml-1m"
        folder.mkdir()
        (folder / "ratings.dat").write_text("1::10::5::978300760\n1::20::4::978300761\n")
        (folder / "movies.dat").write_text("10::Heat (1995)::Action\n20::Fargo (1996)::Crime\n")
    else:
        folder = WRITERS[name](tmp_path / name)
    testing.check_dataset(name, folder)


def test_the_pytest_plugin_is_loaded(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("llara_kit")  # the pytest11 entry point


def test_in_repo_plugin_package_through_the_fixture_which_removes_it(pytester):
    """Two tests in one session: the first registers the in-repo plugin through the
    fixture, the second finds it gone."""
    assert "lowrank" not in load_plugins().registries["projector"]
    path = REPO / "plugins" / "llara-kit-lowrank" / "llara_kit_lowrank.py"
    pytester.makepyfile(f'''
        import importlib.util

        from llara_kit import testing
        from llara_kit.plugins import load_plugins


        def test_registered(llara_plugin):
            spec = importlib.util.spec_from_file_location("lowrank_under_test", {str(path)!r})
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            llara_plugin(module, "lowrank-under-test")
            assert "lowrank" in load_plugins().registries["projector"]
            testing.check_projector("lowrank")
            testing.check_projector("lowrank", rank=4)


        def test_removed_afterwards():
            assert "lowrank" not in load_plugins().registries["projector"]
            assert "lowrank-under-test" not in load_plugins().plugins
    ''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_broken_contract_is_reported(llara_plugin):
    from llara_kit import hookimpl

    def out_of_range(progress):
        return 2 * progress

    llara_plugin(SimpleNamespace(register_schedules=hookimpl(lambda register: register(
        "too-steep", lambda: out_of_range))), "steep")
    with pytest.raises(AssertionError, match="too-steep: p\\(progress\\) must be a number in"):
        testing.check_schedule("too-steep")
