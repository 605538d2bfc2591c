"""The suite leaves the user's home and caches alone (conftest.py's pytest_configure)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ISOLATED

ROOT = Path(__file__).resolve().parents[1]
# A test whose module-scoped fixture prepares data, pre-trains an encoder and trains a run
# with the default cache: what once wrote into ~/.cache/llara-kit.
WRITES_CACHES = "tests/test_evaluate.py::test_cached_scoring_equals_a_full_forward"


def test_a_module_fixture_writes_nothing_into_the_users_home(tmp_path):
    home, tmp = tmp_path / "user-home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED} | {
        "HOME": str(home), "TMPDIR": str(tmp)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", WRITES_CACHES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
    assert list(tmp.glob("llara-kit-tests-*")) == []  # the suite removes its caches
