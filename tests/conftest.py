"""Shared fixtures, and the suite's isolation.

The isolation runs when pytest imports this file, before any library is imported: every
cache, the home folder and the temporary folder point into one folder of the system's
temporary folder, the hub is offline and no token is read, and third-party entry points are
off unless a test turns them on. Subprocesses inherit it. The folder is removed when the
session ends, and a folder left by a killed session is removed by the next one, so
``make test`` leaves nothing behind.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from pathlib import Path

from llara_kit.plugins import DISABLE_AUTOLOAD_ENV  # these two import no library
from llara_kit.storage import HOME_ENV

# Environment variable -> folder under the session's root. The specific ones (HF_HUB_CACHE,
# TORCH_HOME, ...) win over HOME / XDG / HF_HOME in their libraries, so each is set.
ISOLATED = {HOME_ENV: "llara-kit-home", "HOME": "home", "XDG_CACHE_HOME": "cache",
            "XDG_CONFIG_HOME": "config", "HF_HOME": "huggingface",
            "HF_HUB_CACHE": "huggingface/hub", "HF_TOKEN_PATH": "huggingface/token",
            "TORCH_HOME": "torch", "TRITON_CACHE_DIR": "triton",
            "TORCHINDUCTOR_CACHE_DIR": "inductor", "MPLCONFIGDIR": "matplotlib",
            "TMPDIR": "tmp"}
FIXED = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", DISABLE_AUTOLOAD_ENV: "1"}
REMOVED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_CACHE", "PYTORCH_KERNEL_CACHE_PATH")
ROOT_PREFIX = "llara-kit-tests-"
_LIBRARIES = ("torch", "transformers", "huggingface_hub", "accelerate", "matplotlib")


def _remove_abandoned(parent: Path) -> None:
    """Roots of earlier sessions whose process is gone (killed before it could clean up)."""
    for root in parent.glob(f"{ROOT_PREFIX}*"):
        try:
            os.kill(int((root / "pid").read_text()), 0)
        except (OSError, ValueError):  # no such process, or no pid written: abandoned
            shutil.rmtree(root, ignore_errors=True)


def _isolate() -> Path:
    early = sorted(m for m in _LIBRARIES if m in sys.modules)
    if early:
        raise RuntimeError(f"{', '.join(early)} imported before the suite's isolation; "
                           "import it inside tests or fixtures, not in a plugin loaded first.")
    parent = Path(tempfile.gettempdir())
    _remove_abandoned(parent)
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=parent))
    (root / "pid").write_text(str(os.getpid()))
    for name, folder in ISOLATED.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / folder)
    os.environ.update(FIXED)
    for name in REMOVED:
        os.environ.pop(name, None)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    return root


ROOT = _isolate()
signal.signal(signal.SIGTERM, signal.default_int_handler)  # a timeout's TERM still cleans up

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import TEST_DEVICE  # noqa: E402

from llara_kit.devices import pick_device  # noqa: E402
from llara_kit.errors import LlaraKitError  # noqa: E402

pytest_plugins = ("pytester",)  # runs a session inside a test (the fixtures' teardown)


def pytest_configure(config: pytest.Config) -> None:
    try:
        pick_device(TEST_DEVICE)
    except LlaraKitError as e:
        raise pytest.UsageError(f"LLARA_KIT_TEST_DEVICE: {e}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(ROOT, ignore_errors=True)


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
