"""Where llara-kit keeps things, and atomic writes (temp file or folder, then rename)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

HOME_ENV = "LLARA_KIT_HOME"


def cache_home() -> Path:
    """``$LLARA_KIT_HOME``, default ``~/.cache/llara-kit``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "llara-kit")


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(tmp_dir: Path, final: Path) -> Path:
    """Move a fully written folder into place; if another process won the race, keep theirs."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp_dir, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final


def staging_dir(final: Path) -> Path:
    """An empty folder beside ``final`` to write into before ``publish_dir``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
