"""`llara-kit new-plugin`: the written packages pass their own tests once installed, and a
new encoder trains."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import tiny_llm_folder, write_cycle_files

from llara_kit.cli import cli
from llara_kit.plugins import DISABLE_AUTOLOAD_ENV
from llara_kit.scaffold import KINDS


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


def test_a_new_encoder_trains(tmp_path, llara_plugin):
    CliRunner().invoke(cli, ["new-plugin", "demo-enc", "--kind", "encoder", "--dir",
                             str(tmp_path)])
    spec = importlib.util.spec_from_file_location("demo_enc", tmp_path / "demo-enc/demo_enc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    llara_plugin(module, "demo-enc")
    result = CliRunner().invoke(cli, [
        "train", "--encoder", "demo-enc", "--projector", "mlp", "--schedule", "linear",
        "--dataset", "csv", "--data-dir", str(write_cycle_files(tmp_path / "cycle")),
        "--llm", str(tiny_llm_folder(tmp_path / "tiny")), "--history", "5", "--candidates", "10",
        "--split", "0.6,0.2,0.2", "--template", "item", "--max-train-samples", "8",
        "--batch-size", "4", "--precision", "fp32", "--out", str(tmp_path / "run")],
        env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"plugin": "demo-enc"' in config


@pytest.mark.parametrize(("args", "message"), [
    (["Demo", "--kind", "encoder"], "Plugin name 'Demo' must be lower-case letters"),
    (["demo", "--kind", "encoder", "--dir", "{tmp}"], "already exists; choose another name"),
])
def test_bad_names_are_one_sentence(tmp_path, args, message):
    (tmp_path / "demo").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(cli, ["new-plugin", *args])
    assert result.exit_code == 1 and message in result.output
