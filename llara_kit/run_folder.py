"""The run folder's records: the one module that reads and writes them.

A run folder holds ``config.json`` (the resolved settings, component names and versions),
``data.json`` (data set, hash, settings), ``encoder/`` (the encoder the run trained with,
copied in before the first step), ``projector.safetensors``, ``objective.safetensors``,
``score_direction.safetensors`` (user-conditioned runs with ``user_signal`` score),
``adapter/`` (peft), ``train_log.jsonl``, ``summary.json`` (written last: the run finished),
and after evaluation ``metrics.json`` and ``predictions-<split>-<method>.jsonl``; while
training, ``checkpoint/`` (the same weights, ``optimizer.safetensors`` and ``state.json``);
``.lock``, which the process writing into the folder holds (``owned``). The weights are
written and read by ``llara_kit.run`` (the assembly); every JSON record here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llara_kit.config import TrainConfig
from llara_kit.errors import LlaraKitError
from llara_kit.plugins import KINDS, load_plugins
from llara_kit.storage import read_json, read_jsonl, sha256_file, write_json, write_jsonl, writing
from llara_kit.version import VERSION

CONFIG, DATA, LOG, SUMMARY, METRICS, LOCK = (
    "config.json", "data.json", "train_log.jsonl", "summary.json", "metrics.json", ".lock")
ENCODER, ADAPTER, CHECKPOINT = "encoder", "adapter", "checkpoint"
CHECKPOINT_STATE = "state.json"  # in a checkpoint folder: the optimizer steps it holds
# What a finished run has; summary.json is written last, so without it training was killed.
FINISHED = (CONFIG, DATA, "projector.safetensors", ADAPTER, ENCODER, SUMMARY)
# Settings older run folders lack, as those runs trained: before objectives existed the
# paper's way; before user_signal existed user-conditioned tokens carried the product; before
# title_tokens existed titles were whole.
_OLDER_RUNS = {"objective": "title", "user_conditioned": False, "user_signal": "product",
               "title_tokens": 0}
# Objective options older runs trained with where a default has changed since (a run folder
# stores its options resolved, so a missing one predates its default): the plain head.
_OLDER_OPTIONS = {"head": {"residual": False}}


_owned: dict[Path, int] = {}  # folders this process holds -> how many `owned` blocks deep


@contextmanager
def owned(run_dir: Path, doing: str, fix: str) -> Iterator[None]:
    """Hold an existing run folder while this process writes into it (``doing``: what for):
    an OS lock on its ``.lock`` file, which the kernel releases when the process ends, killed
    or not. Another process that asks for it meanwhile fails at once with one sentence that
    names the holder and ``fix``. Re-entrant within a process; under a launcher (torchrun,
    mpirun) only rank 0 locks."""
    from llara_kit.distributed import launched_rank  # torch: whoever locks a run has it

    folder = Path(run_dir).resolve()
    if folder in _owned or not folder.is_dir() or launched_rank() != 0:
        _owned[folder] = _owned.get(folder, 0) + 1
        try:
            yield
        finally:
            _owned[folder] -= 1
            if not _owned[folder]:
                del _owned[folder]
        return
    with writing(folder / LOCK), open(folder / LOCK, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LlaraKitError(f"Run folder {str(run_dir)!r} is in use by {holder}; {fix}."
                                ) from None
        fh.truncate(0)
        fh.write(f"process {os.getpid()} ({doing} since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        fh.flush()
        _owned[folder] = 1
        try:
            yield
        finally:
            del _owned[folder]
            fh.truncate(0)


def evaluating(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the run folder while evaluations are scored and recorded into it."""
    return owned(run_dir, "evaluating", "wait for it to end, then run this again")


def default_run_dir(cfg: TrainConfig) -> Path:
    """Where ``train`` writes without ``--out``: runs/<time>-<encoder>-<projector>-<schedule>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.encoder}-{cfg.projector}-{cfg.schedule}"


def is_run(run_dir: Path) -> bool:
    return (Path(run_dir) / CONFIG).is_file()


def require_run(run_dir: Path) -> None:
    if not is_run(run_dir):
        raise LlaraKitError(f"{str(run_dir)!r} is not a run folder (no {CONFIG}); give folders "
                            "written by `llara-kit train`.")


def require_finished(run_dir: Path) -> None:
    missing = [n for n in FINISHED if not (Path(run_dir) / n).exists()]
    if missing:
        raise LlaraKitError(
            f"{str(run_dir)!r} is not a finished run folder (missing {', '.join(missing)}); "
            "train one with `llara-kit train` or resume it with --resume."
        )


def write_config(run_dir: Path, cfg: TrainConfig, data_manifest: dict[str, Any]) -> None:
    """config.json (resolved, with each component's plugin and version) and data.json."""
    plugins = load_plugins()
    components = {}
    for kind in KINDS:
        plugin = plugins.registries[kind].get(getattr(cfg, kind)).plugin
        components[kind] = {"name": getattr(cfg, kind), "plugin": plugin,
                            "version": plugins.plugins[plugin].version}
    write_json(Path(run_dir) / CONFIG, {"config": cfg.to_dict(), "components": components,
                                        "llara_kit_version": VERSION})
    write_json(Path(run_dir) / DATA, {k: data_manifest[k] for k in
                                      ("dataset", "hash", "key", "counts", "settings")})


def read_config(run_dir: Path) -> TrainConfig:
    """The resolved settings a run folder was trained with."""
    require_run(run_dir)
    saved = _OLDER_RUNS | read_json(Path(run_dir) / CONFIG)["config"]
    saved["objective_options"] = (_OLDER_OPTIONS.get(saved["objective"], {})
                                  | saved.get("objective_options", {}))
    return TrainConfig(**saved)


def read_data_manifest(run_dir: Path) -> dict[str, Any]:
    """data.json: the data set, its hash and the settings the run was trained on."""
    return read_json(Path(run_dir) / DATA)


def has_data_manifest(run_dir: Path) -> bool:
    return (Path(run_dir) / DATA).is_file()


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG


def read_log(run_dir: Path, torn_tail: bool = False) -> list[dict[str, Any]]:
    """The training log, one entry per optimizer step ([] before the first)."""
    path = log_path(run_dir)
    return read_jsonl(path, torn_tail=torn_tail) if path.is_file() else []


def write_log(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    write_jsonl(log_path(run_dir), entries)


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT


def write_checkpoint_state(folder: Path, step: int) -> None:
    """``state.json`` of a checkpoint folder being built (written last into it)."""
    write_json(Path(folder) / CHECKPOINT_STATE, {"step": step})


def read_checkpoint_step(folder: Path) -> int:
    return read_json(Path(folder) / CHECKPOINT_STATE)["step"]


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(Path(run_dir) / SUMMARY, summary)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's summary, or None while it is unfinished."""
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.is_file() else None


def _predictions_path(run_dir: Path, split: str, method: str) -> Path:
    return Path(run_dir) / f"predictions-{split}-{method}.jsonl"


def record_metrics(run_dir: Path, split: str, method: str, metrics: dict,
                   info: dict[str, Any], predictions: list[dict]) -> None:
    """Write one method's predictions, then add its metrics, with the predictions' sha256, to
    the run's metrics.json (each atomically): a kill between the two leaves metrics that do
    not vouch for the new predictions, and ``read_predictions`` refuses them."""
    path = _predictions_path(run_dir, split, method)
    with evaluating(run_dir):
        write_jsonl(path, predictions)
        metrics_path = Path(run_dir) / METRICS
        stored = read_json(metrics_path) if metrics_path.is_file() else {}
        stored.setdefault(split, {})[method] = {**info, "metrics": metrics,
                                                "predictions_sha256": sha256_file(path)}
        write_json(metrics_path, stored)


def read_predictions(run_dir: Path, split: str, method: str) -> list[dict]:
    """The predictions ``evaluate`` recorded for ``method`` on ``split`` ([] if none), checked
    against the sha256 in metrics.json."""
    path = _predictions_path(run_dir, split, method)
    if not path.is_file():
        return []
    expected = load_metrics(run_dir).get(split, {}).get(method, {}).get("predictions_sha256")
    if expected is not None and sha256_file(path) != expected:
        raise LlaraKitError(
            f"{str(path)!r} does not match the metrics recorded with it (an evaluation was "
            f"interrupted); run `llara-kit evaluate {run_dir} --split {split}` again."
        )
    return read_jsonl(path)


def has_metrics(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS).is_file()


def load_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json: {split: {method: {metrics, samples, ...}}}."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise LlaraKitError(
            f"{str(run_dir)!r} has no {METRICS}; run `llara-kit evaluate` on it first."
        )
    return read_json(path)
