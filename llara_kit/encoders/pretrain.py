"""Pre-training sequence encoders on a prepared data set, cached by (encoder, config, data).

The encoder's ``pretrain_loss`` on the train samples (default: next-item cross-entropy over
all items; an encoder may bring its own, e.g. BERT4Rec's masked items) or, with
``sampled_softmax``, a softmax over items drawn per batch for large catalogues; the memory a
step needs is checked before the first. Adam, early stopping on the validation MRR over the
stored candidates, the best epoch's weights kept.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llara_kit.config import PretrainSettings
from llara_kit.data import PreparedData
from llara_kit.devices import free_memory, pick_device
from llara_kit.encoders import Encoder, load_encoder
from llara_kit.encoders.ranking import (
    candidate_ranks,
    popularity_scorer,
    score_item_scorer,
)
from llara_kit.errors import LlaraKitError
from llara_kit.metrics import per_sample
from llara_kit.plugins import get_component
from llara_kit.progress import Progress
from llara_kit.storage import (
    cache_home,
    read_json,
    sha256_json,
    staged_dir,
    write_json,
    write_jsonl,
)
from llara_kit.version import VERSION

FORMAT = 1  # bump when training changes what a stored encoder means


@dataclass
class Pretrained:
    encoder: Encoder
    path: Path
    report: dict[str, Any]  # settings, epochs, seconds, test metrics
    reused: bool


def build_encoder(name: str, data: PreparedData, options: dict[str, Any]) -> Encoder:
    """A fresh encoder sized for ``data``; ``options`` override its config defaults."""
    cls = get_component("encoder", name).factory
    return cls.from_options(**(_sizing(data) | options))


def _sizing(data: PreparedData) -> dict[str, int]:
    return {"n_items": data.n_items, "max_len": data.settings.history}


def stored_encoders(name: str, data: PreparedData, options: dict[str, Any] | None = None, *,
                    home: Path | None = None) -> list[Path]:
    """Folders where ``pretrain`` stored encoder ``name`` with these options for ``data``
    (any training settings, every train sample), newest first."""
    cls = get_component("encoder", name).factory
    config = asdict(cls.config_from(**(_sizing(data) | dict(options or {}))))
    found = []
    for report_path in ((home or cache_home()) / "encoders").glob(f"{name}-*/pretrain.json"):
        report = read_json(report_path)
        if (report.get("format"), report.get("encoder"), report.get("config"),
                report.get("data_hash"), report.get("rows")) == (FORMAT, name, config,
                                                                  data.hash, None):
            found.append((report_path.stat().st_mtime, report_path.parent))
    return [folder for _, folder in sorted(found, reverse=True)]


def _valid_mrr(encoder: Encoder, data: PreparedData) -> float:
    encoder.eval()
    return float(per_sample(candidate_ranks(encoder, data, "valid"), "MRR").mean())


def _train_epoch(encoder: Encoder, optimizer: torch.optim.Optimizer, data: PreparedData,
                 settings: PretrainSettings, generator: torch.Generator,
                 rows: np.ndarray | None) -> float:
    train = data.splits["train"]
    rows = np.arange(len(train)) if rows is None else rows
    device = next(encoder.parameters()).device
    history, lengths, targets = (torch.from_numpy(a[rows]).to(device)
                                 for a in (train.history, train.lengths, train.targets))
    encoder.train()
    total, order = 0.0, torch.randperm(len(rows), generator=generator).to(device)
    for start in range(0, len(order), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        if settings.sampled_softmax:  # one uniform draw of items for the whole batch
            drawn = torch.randint(1, data.n_items + 1, (settings.sampled_softmax,),
                                  generator=generator).to(device)
            loss = encoder.sampled_loss(history[idx], lengths[idx], targets[idx], drawn)
        else:
            loss = encoder.pretrain_loss(history[idx], lengths[idx], targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(order)


# What a step holds beyond its weights and logits (autograd's buffers, the allocator's slack):
# about 0.1 GiB measured at 50k and 100k items (examples/benchmarks/scale.py, results.md).
STEP_OVERHEAD = 1 << 28


def pretrain_memory(encoder: Encoder, settings: PretrainSettings) -> int:
    """Bytes pre-training holds at its peak beyond the data, about: the weights, their
    gradients and Adam's two moments (4 floats per weight), 3 floats (logits, softmax,
    gradient) for each sample of a batch and each item it is scored against (every item, or
    the K + 1 of a sampled softmax), and ``STEP_OVERHEAD``. An upper envelope of the peaks
    measured at 50k to 1M items (docs/encoders.md); an encoder with its own loss may hold
    more."""
    weights = sum(p.numel() for p in encoder.parameters())
    sampled = settings.sampled_softmax
    scored = sampled + 1 if sampled else encoder.config.n_items + 1
    return 4 * (4 * weights + 3 * settings.batch_size * scored) + STEP_OVERHEAD


def _check_settings(name: str, encoder: Encoder, settings: PretrainSettings,
                    device: torch.device) -> int:
    """Refuse in one sentence what cannot run: a sampled softmax with an encoder's own loss, a
    step that does not fit in the memory free; the bytes needed otherwise."""
    own_loss = type(encoder).pretrain_loss is not Encoder.pretrain_loss
    if settings.sampled_softmax and own_loss:
        raise LlaraKitError(
            f"Encoder {name!r} brings its own pre-training loss, which --sampled-softmax "
            "does not replace; leave --sampled-softmax at 0 for it.")
    need, free = pretrain_memory(encoder, settings), free_memory(device)
    if need > free:
        softmax = (f"a softmax over {settings.sampled_softmax:,} sampled items"
                   if settings.sampled_softmax
                   else f"the exact softmax over {encoder.config.n_items:,} items")
        raise LlaraKitError(
            f"Pre-training {name} with {softmax} and batches of {settings.batch_size} needs "
            f"about {need / 2**30:.1f} GiB but {free / 2**30:.1f} GiB is free on "
            f"{device.type}; pass `llara-kit pretrain --sampled-softmax 1000` or lower "
            "--batch-size.")
    return need


def pretrain_encoder(name: str, data: PreparedData, options: dict[str, Any] | None = None,
                     settings: PretrainSettings | None = None, *, home: Path | None = None,
                     force: bool = False, show_progress: bool = True,
                     device: str = "auto", rows: np.ndarray | None = None,
                     label: str | None = None) -> Pretrained:
    """Train (or reuse from the cache) encoder ``name`` on ``data``, on ``device`` (the
    stored weights and the test scores are the CPU's). ``rows`` limits training to those
    train samples (a cross-fitting fold's complement; ``label`` names it in the progress)."""
    options, settings = dict(options or {}), settings or PretrainSettings()
    torch.manual_seed(settings.seed)  # initial weights
    encoder = build_encoder(name, data, options)
    key_fields = {"format": FORMAT, "encoder": name, "config": asdict(encoder.config),
                  "settings": asdict(settings), "data_hash": data.hash,
                  **({} if rows is None else {"rows": sha256_json(np.asarray(rows).tolist())})}
    key = sha256_json(key_fields)
    folder = (home or cache_home()) / "encoders" / f"{name}-{key[:16]}"
    if (folder / "pretrain.json").is_file() and not force:
        report = read_json(folder / "pretrain.json")
        return Pretrained(load_encoder(folder), folder, report, reused=True)

    generator = torch.Generator().manual_seed(settings.seed)
    device = pick_device(device)
    need = _check_settings(name, encoder, settings, device)
    encoder.to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=settings.lr,
                                 weight_decay=settings.weight_decay)
    log, best, best_state, stale = [], -1.0, None, 0
    started = time.perf_counter()
    with Progress(f"pre-training {label or name}", settings.epochs, "epochs",
                  show=show_progress) as progress:
        for epoch in range(settings.epochs):
            loss = _train_epoch(encoder, optimizer, data, settings, generator, rows)
            mrr = _valid_mrr(encoder, data)
            log.append({"epoch": epoch, "loss": round(loss, 5), "valid_mrr": round(mrr, 5),
                        "seconds": round(time.perf_counter() - started, 2)})
            if mrr > best:
                best, best_state, stale = mrr, copy.deepcopy(encoder.state_dict()), 0
            else:
                stale += 1
            progress.advance(1, f"loss {loss:.3f}, valid MRR {mrr:.3f} (best {best:.3f})")
            if stale >= settings.patience:
                break
    encoder.load_state_dict(best_state)
    encoder.cpu().eval()
    report = {
        **key_fields, "key": key, "llara_kit_version": VERSION,
        "epochs_run": len(log), "best_epoch": int(np.argmax([e["valid_mrr"] for e in log])),
        "seconds": round(time.perf_counter() - started, 2), "threads": torch.get_num_threads(),
        "memory_estimate_gib": round(need / 2**30, 3),
        "test": score_item_scorer(encoder, data, "test", seed=settings.seed),
    }
    # another process may have stored the same encoder meanwhile: keep it (unless --force)
    keep = None if force else (lambda f: (f / "pretrain.json").is_file())
    with staged_dir(folder, keep) as tmp:
        encoder.save(tmp)
        write_jsonl(tmp / "train_log.jsonl", log)
        write_json(tmp / "pretrain.json", report)
    stored = read_json(folder / "pretrain.json")  # ours, or the first stored
    return Pretrained(load_encoder(folder), folder, stored, reused=False)


def popularity_baseline(data: PreparedData) -> dict[str, dict[str, float]]:
    """The popularity baseline's test metrics on the same candidates, shown beside a
    pre-trained encoder's."""
    return score_item_scorer(popularity_scorer(data), data, "test", seed=data.settings.seed)
