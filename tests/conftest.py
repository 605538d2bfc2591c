"""Shared fixtures. Third-party entry points are off unless a test turns them on."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from llara_kit.plugins import DISABLE_AUTOLOAD_ENV
from llara_kit.storage import HOME_ENV


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No third-party entry points, and a private cache per test session."""
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setenv(HOME_ENV, str(tmp_path_factory.getbasetemp() / "llara-kit-home"))


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
