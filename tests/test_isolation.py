"""The suite leaves the user's home and caches alone (conftest.py's pytest_configure)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FIXED, ISOLATED, ROOT_PREFIX

TESTS = Path(__file__).resolve().parent
# What the suite does that could write into a home or a temporary folder: a module-scoped
# fixture building into the default cache (it runs before any function-scoped one could
# redirect it), a model loaded and trained through transformers and accelerate, a 2-process
# torchrun (its logs), a matplotlib report.
PROBE = '''
import subprocess

import pytest
from helpers import train_tiny

from llara_kit.data import prepare_data
from llara_kit.distributed import command
from llara_kit.evaluation.report import write_report


@pytest.fixture(scope="module")
def movielens():
    return prepare_data("ml-100k")[0]


def test_prepared(movielens):
    assert movielens.n_items == 1682


def test_trained_evaluated_on_two_processes_and_reported(tmp_path):
    run = train_tiny(tmp_path, "run")
    subprocess.run(command(2) + ["evaluate", str(run), "--no-fuse"], check=True,
                   capture_output=True)
    assert write_report([run], run / "report.html", "test", "score").is_file()
'''


@pytest.mark.slow
def test_the_suite_writes_nothing_into_the_users_home_or_temporary_folder(tmp_path):
    home, tmp = tmp_path / "user-home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    for name, pid in (("abandoned", ended.stdout.strip()), ("live", str(os.getpid()))):
        (tmp / f"{ROOT_PREFIX}{name}").mkdir()  # a killed session's folder, a running one's
        (tmp / f"{ROOT_PREFIX}{name}" / "pid").write_text(pid)
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "test_probe.py").write_text(textwrap.dedent(PROBE))
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED and k not in FIXED} | {
        "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(TESTS)}
    result = subprocess.run(  # the suite's conftest, loaded as a plugin, on the probe alone
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path / "probe"), str(tmp_path / "probe")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
    # the suite removes its caches and logs, and what a killed session left
    assert [p.name for p in tmp.iterdir()] == [f"{ROOT_PREFIX}live"]
