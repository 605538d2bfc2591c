"""The suite leaves the user's home and caches alone (conftest.py's pytest_configure)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ISOLATED

TESTS = Path(__file__).resolve().parent
# A module-scoped fixture that builds into the default cache, as the suite's fixtures do;
# module fixtures run before any function-scoped one could redirect the cache.
PROBE = '''
import pytest

from llara_kit.data import prepare_data


@pytest.fixture(scope="module")
def movielens():
    return prepare_data("ml-100k")[0]


def test_prepared(movielens):
    assert movielens.n_items == 1682
'''


def test_a_module_fixture_writes_nothing_into_the_users_home(tmp_path):
    home, tmp = tmp_path / "user-home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "test_probe.py").write_text(textwrap.dedent(PROBE))
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED} | {
        "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(TESTS)}
    result = subprocess.run(  # the suite's conftest, loaded as a plugin, on the probe alone
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path / "probe"), str(tmp_path / "probe")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
    assert list(tmp.glob("llara-kit-tests-*")) == []  # the suite removes its caches
