"""Where llara-kit keeps things, atomic writes (temp file or folder, then rename), and reads
that name a damaged file in one sentence."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llara_kit.errors import LlaraKitError

HOME_ENV = "LLARA_KIT_HOME"
# safetensors reports a failed write as "... I/O error: No space left on device (os error 28)"
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def cache_home() -> Path:
    """``$LLARA_KIT_HOME``, default ``~/.cache/llara-kit``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "llara-kit")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A reader sees the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the usual mode
    os.close(fd)
    try:
        with writing(path):
            yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """A failed write as an OSError naming ``path`` (what the CLI answers in one sentence):
    libraries raise some without a file name, and safetensors its own error for a full
    disk."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except Exception as exc:
        found = _OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextmanager
def staged_dir(final: Path, keep: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty folder beside ``final``; on success it becomes ``final`` whole.

    Readers never see a half-written folder; on failure nothing of it remains. When ``final``
    already exists and ``keep(final)`` is true (another process finished the same artifact
    first) the new folder is discarded; otherwise the old one moves to ``<final>.old`` and is
    removed once the new one is in place, so a kill at any moment leaves a complete folder at
    ``final`` or at ``<final>.old`` (see ``complete_dir``).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    old = final.with_name(final.name + ".old")
    try:
        with writing(final):
            yield tmp
        if final.exists() and keep is not None and keep(final):
            return
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def complete_dir(final: Path, marker: str) -> Path | None:
    """``final`` if it holds ``marker`` (a file written last), else the ``<final>.old`` a
    replacement interrupted between its two renames left, else None."""
    for folder in (Path(final), Path(final).with_name(Path(final).name + ".old")):
        if (folder / marker).is_file():
            return folder
    return None


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Reads of ``path`` inside: a file cut short or not of its format (a copy interrupted, a
    disk fault, a hand edit) becomes one sentence naming it."""
    try:
        yield
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(path, f"not JSON: {exc}") from exc
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        raise damaged(path, f"cut short or not safetensors: {exc}") from exc


def damaged(path: Path, detail: str) -> LlaraKitError:
    return LlaraKitError(f"File '{path}' is damaged ({detail}); restore it from a copy, or "
                         "remove it and run the command that wrote it again.")


def read_json(path: Path) -> Any:
    """The JSON file ``path`` (one sentence if it is damaged)."""
    with reading(path):
        return json.loads(Path(path).read_text(encoding="utf-8"))


def read_tensors(path: Path, framework: str = "pt") -> dict[str, Any]:
    """The safetensors file ``path`` as torch tensors (``framework="np"``: arrays; its
    metadata: ``read_metadata``); one sentence if it is damaged."""
    from safetensors import safe_open

    with reading(path), safe_open(str(path), framework) as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata stored in the safetensors file ``path``."""
    from safetensors import safe_open

    with reading(path), safe_open(str(path), "np") as fh:
        return fh.metadata() or {}


def write_jsonl(path: Path, rows: list[Any]) -> None:
    """Write JSON lines atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def read_jsonl(path: Path, torn_tail: bool = False) -> list[Any]:
    """JSON lines; with ``torn_tail`` a last line cut short (a log appended to when its
    process was killed) is dropped."""
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    if torn_tail and lines and not lines[-1].endswith("\n"):
        lines.pop()
    with reading(path):
        return [json.loads(line) for line in lines]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
