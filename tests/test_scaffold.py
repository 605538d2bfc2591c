"""`llara-kit new-plugin`: the written packages pass their own tests once installed, and a
new component of every kind runs as docs/writing-plugins.md shows."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_llm_folder, write_cycle_files

from llara_kit.cli import cli
from llara_kit.plugins import DISABLE_AUTOLOAD_ENV
from llara_kit.scaffold import KINDS, USAGE


def test_every_kind_installs_and_passes_its_own_test(tmp_path, install_dist):
    folders = []
    for kind in KINDS:
        result = CliRunner().invoke(cli, ["new-plugin", f"demo-{kind}", "--kind", kind,
                                          "--dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        folder = tmp_path / f"demo-{kind}"
        module = f"demo_{kind}"
        assert f'demo-{kind} = "{module}"' in (folder / "pyproject.toml").read_text()
        site = install_dist(f"demo-{kind}", {f"demo-{kind}": module},
                            {f"{module}.py": (folder / f"{module}.py").read_text()})
        folders.append(str(folder))
    env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}  # entry points on
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *folders], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(KINDS)} passed" in proc.stdout


DOCS = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
TINY = ["--max-train-samples", "8", "--batch-size", "4", "--grad-accum", "1", "--precision",
        "fp32", "--history", "5", "--candidates", "10", "--split", "0.6,0.2,0.2"]


def documented_command(kind: str) -> str:
    """The run command docs/writing-plugins.md gives for ``kind`` (for the plugin my-<kind>)."""
    section = DOCS.read_text().split(f"### {kind.capitalize()}", 1)[1].split("\n### ", 1)[0]
    return re.search(r"^llara-kit train .*$", section, re.MULTILINE).group(0)


def write_tsv_files(folder: Path) -> Path:
    """events.tsv and titles.tsv as the generated data-set plugin reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.tsv").write_text("user\titem\ttime\n" + "".join(
        f"u{u}\ti{(u + t) % 30}\t{t}\n" for u in range(40) for t in range(12)))
    (folder / "titles.tsv").write_text(
        "item\ttitle\n" + "".join(f"i{i}\tBook {i}\n" for i in range(30)))
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_runs_as_documented(kind, tmp_path, llara_plugin):
    """new-plugin, then the run command of docs/writing-plugins.md (and of the package's
    README) trains with the new component on the tiny Llama."""
    name = f"my-{kind}"
    CliRunner().invoke(cli, ["new-plugin", name, "--kind", kind, "--dir", str(tmp_path)])
    module_name = name.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name,
                                                  tmp_path / name / f"{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    llara_plugin(module, name)
    command = documented_command(kind)
    assert command == USAGE[kind].format(name=name)
    assert command in (tmp_path / name / "README.md").read_text()
    args = shlex.split(command)[1:]
    if kind == "dataset":
        args[args.index("FOLDER")] = str(write_tsv_files(tmp_path / "tsv"))
    else:
        args += ["--dataset", "csv", "--data-dir", str(write_cycle_files(tmp_path / "cycle"))]
        args += [] if kind == "template" else ["--template", "item"]
    args += [*TINY, "--llm", str(tiny_llm_folder()), "--out",
             str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["components"][kind] == {"name": name, "plugin": name, "version": "local"}


@pytest.mark.parametrize(("args", "message"), [
    (["Demo", "--kind", "encoder"], "Plugin name 'Demo' must be lower-case letters"),
    (["demo", "--kind", "encoder", "--dir", "{tmp}"], "already exists; choose another name"),
])
def test_bad_names_are_one_sentence(tmp_path, args, message):
    (tmp_path / "demo").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(cli, ["new-plugin", *args])
    assert result.exit_code == 1 and message in result.output
