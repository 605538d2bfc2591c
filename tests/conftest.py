"""Shared fixtures, and the suite's isolation: before any fixture runs, every cache and the
home folder point into one temporary folder, and third-party entry points are off unless a
test turns them on. ``make test`` changes nothing a user owns."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import TEST_DEVICE

from llara_kit.devices import pick_device
from llara_kit.errors import LlaraKitError
from llara_kit.plugins import DISABLE_AUTOLOAD_ENV
from llara_kit.storage import HOME_ENV

# Where the suite's caches go, under one temporary root (environment variable -> folder).
ISOLATED = {HOME_ENV: "llara-kit-home", "HOME": "home", "XDG_CACHE_HOME": "cache",
            "HF_HOME": "huggingface", "MPLCONFIGDIR": "matplotlib"}
_root_key = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Runs before any fixture, module-scoped ones included; subprocesses inherit it."""
    root = Path(tempfile.mkdtemp(prefix="llara-kit-tests-"))
    config.stash[_root_key] = root
    for name, folder in ISOLATED.items():
        (root / folder).mkdir()
        os.environ[name] = str(root / folder)
    os.environ[DISABLE_AUTOLOAD_ENV] = "1"
    try:
        pick_device(TEST_DEVICE)
    except LlaraKitError as e:
        raise pytest.UsageError(f"LLARA_KIT_TEST_DEVICE: {e}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(_root_key, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where a test puts models and batches: ``LLARA_KIT_TEST_DEVICE``, the CPU by default."""
    return torch.device(TEST_DEVICE)


@pytest.fixture
def install_dist(tmp_path, monkeypatch):
    """Write a real distribution (dist-info + module) into a folder on sys.path.

    ``install_dist("acme-enc", {"acme": "acme_enc"}, {"acme_enc.py": source})`` makes
    ``importlib.metadata`` see distribution ``acme-enc`` with entry point
    ``acme = acme_enc`` in the ``llara_kit`` group.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added_modules: list[str] = []

    def install(dist: str, entry_points: dict[str, str], files: dict[str, str],
                version: str = "1.2.3") -> Path:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[llara_kit]\n{eps}")
        for rel, source in files.items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            added_modules.append(rel.removesuffix(".py").replace("/", "."))
        importlib.invalidate_caches()
        return site

    yield install
    for name in added_modules:
        sys.modules.pop(name, None)
