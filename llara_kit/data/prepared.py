"""Prepared data: built once per (data set, options, settings), stored in the cache, reused.

A prepared folder holds ``manifest.json`` (settings, sources, counts, skips, content hash),
``items.jsonl`` (id, raw id, title, year), ``users.json`` (raw user ids by index) and
``arrays.safetensors`` (user sequences, samples, stored valid/test candidates).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from llara_kit.data import protocol
from llara_kit.data.raw import UNLISTED, UNTITLED, DataError, RawData
from llara_kit.data.settings import NEW_SPLITS, SPLITS, DataSettings
from llara_kit.plugins import build_component
from llara_kit.storage import (
    cache_home,
    read_json,
    read_jsonl,
    read_tensors,
    sha256_file,
    sha256_json,
    staged_dir,
    write_json,
    write_jsonl,
)
from llara_kit.version import VERSION

FORMAT = 3  # bump when the stored layout or the protocol changes (2: item attributes, 3:
# negatives drawn by rejection)


def target_positions(candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n,) the column of each row's target in its candidate list: (n, C), (n,)."""
    return np.argmax(candidates == targets[:, None], axis=1)


@dataclass
class Split:
    """One split's samples. ``candidates`` is stored for valid/test, drawn per epoch for train."""

    users: np.ndarray  # (n,) user index
    history: np.ndarray  # (n, H) item ids, left-aligned, 0 = padding
    lengths: np.ndarray  # (n,)
    targets: np.ndarray  # (n,)
    candidates: np.ndarray | None  # (n, C) or None
    more_candidates: np.ndarray | None = None  # (draws - 1, n, C): further negative draws

    def __len__(self) -> int:
        return len(self.targets)

    def target_positions(self) -> np.ndarray:
        """(n,) index of each target among its stored candidates (valid/test)."""
        return target_positions(self.candidates, self.targets)

    def candidate_draws(self) -> list[np.ndarray]:
        """Every stored candidate draw, (n, C) each; the first is ``candidates``."""
        more = [] if self.more_candidates is None else list(self.more_candidates)
        return [self.candidates, *more]

    def history_of(self, i: int) -> list[int]:
        """Sample ``i``'s history item ids, oldest first, without padding."""
        return self.history[i, : self.lengths[i]].tolist()


class PreparedData:
    """Sequences, splits and candidate sets of one data set under one set of settings."""

    def __init__(self, path: Path, manifest: dict, items: list[dict], raw_users: list[str],
                 arrays: dict[str, np.ndarray]):
        self.path = path
        self.manifest = manifest
        self.settings = DataSettings(**manifest["settings"])
        self.raw_item_ids = [""] + [it["raw_id"] for it in items]  # index = item id
        self.titles = [""] + [it["title"] for it in items]
        self.years = [None] + [it["year"] for it in items]
        self.attributes = [[]] + [it.get("attributes", []) for it in items]  # genres, tags
        self.item_texts = self.titles  # what prompts show of each item (a run may add more)
        self.raw_user_ids = raw_users
        offsets = arrays["seq_offsets"]
        self.sequences = np.split(arrays["seq_items"], offsets[1:-1])  # per user, by time
        self.is_new = np.zeros(self.n_items + 1, dtype=bool)  # items held out as new
        self.is_new[arrays.get("new_items", np.zeros(0, dtype=np.int64))] = True
        self.positions = {name: arrays[f"{name}_positions"] for name in SPLITS + NEW_SPLITS
                          if f"{name}_positions" in arrays}
        self.splits = {}
        for name in SPLITS + NEW_SPLITS:
            rows = name.removesuffix("-only")  # the -only splits share their samples
            if f"{name}_candidates" in arrays or name == "train":
                self.splits[name] = Split(
                    arrays[f"{rows}_users"], arrays[f"{rows}_history"],
                    arrays[f"{rows}_lengths"], arrays[f"{rows}_targets"],
                    arrays.get(f"{name}_candidates"), arrays.get(f"{name}_more_candidates"))

    @property
    def hash(self) -> str:
        return self.manifest["hash"]

    @property
    def n_items(self) -> int:
        return len(self.titles) - 1

    @property
    def has_new_items(self) -> bool:
        return bool(self.is_new.any())

    def training_interactions(self) -> np.ndarray:
        """Every item occurrence training may see (train users' sequences, less the held-out
        tail under ``loo``, less new items): what popularity counts."""
        users = np.unique(self.splits["train"].users)
        seen = np.concatenate([protocol.training_part(self.sequences[u], self.settings)
                               for u in users])
        return seen[~self.is_new[seen]]

    def seen_before(self, split: str) -> list[np.ndarray]:
        """Per sample of ``split``: every item its user interacted with before the target
        (the whole sequence so far, not only the history window; new items included)."""
        s = self.splits[split]
        rows = split.removesuffix("-only")
        if rows in self.positions:
            return [self.sequences[u][:t] for u, t in zip(s.users, self.positions[rows],
                                                           strict=True)]
        rows = protocol.sample_rows(np.unique(s.users), self.sequences, self.settings, split)
        return [self.sequences[u][:t] for u, t in rows]

    def train_candidates(self, epoch: int, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, C) candidates for one epoch of the train samples ``rows`` (all by default: n =
        n_train), drawn from a generator seeded by (seed, epoch), never a new item."""
        train = self.splits["train"]
        rows = slice(None) if rows is None else rows
        rng = protocol.candidate_rng(self.settings, "train", epoch)
        return protocol.draw_candidates(
            train.users[rows], train.targets[rows], self.sequences, self.n_items,
            self.settings.candidates, rng, pool=~self.is_new if self.has_new_items else None,
        )


def _content_hash(arrays: dict[str, np.ndarray], items: list[dict], users: list[str],
                  settings: DataSettings) -> str:
    """The samples and the first candidate draw: further draws (``draws``) leave it unchanged,
    so a run trained on the data can be evaluated on more draws. The items' attributes are
    not part of it (they are read only where a run asks for them, see ``item_text``), so
    data prepared before attributes were kept keeps its hash."""
    first_draw = {k: v for k, v in settings.to_dict().items() if k != "draws"}
    titled = [{k: v for k, v in item.items() if k != "attributes"} for item in items]
    digest = hashlib.sha256(json.dumps([titled, users, first_draw]).encode())
    for name in sorted(k for k in arrays if not k.endswith("_more_candidates")):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype}:{a.shape}".encode())
        digest.update(a.data)  # the bytes, not a copy
    return digest.hexdigest()


@contextmanager
def _naming_untitled(raw: RawData) -> Iterator[None]:
    """A protocol error on data that lost interactions to untitled items says so first: the
    cause is then the items file, not the settings."""
    try:
        yield
    except DataError as exc:
        dropped = raw.skipped.get(UNTITLED, 0) + raw.skipped.get(UNLISTED, 0)
        if not dropped:
            raise
        total, reason = dropped + len(raw.interactions), str(exc)
        raise DataError(f"{dropped:,} of {total:,} interactions were dropped because their item "
                        "has no title in the items file, and with the rest: "
                        f"{reason[0].lower()}{reason[1:]}") from None


def _first_seen(raw: RawData, item_id: dict[str, int]) -> np.ndarray:
    """(n_items + 1,) each item's earliest interaction time."""
    first = np.full(len(item_id) + 1, np.inf)
    for _, item, ts in raw.interactions:
        first[item_id[item]] = min(first[item_id[item]], ts)
    return first


def _store_split(arrays: dict[str, np.ndarray], name: str, rows: list[tuple[int, int]],
                 sequences: list[np.ndarray], settings: DataSettings, new: np.ndarray | None
                 ) -> dict[str, np.ndarray]:
    samples = protocol.make_samples(rows, sequences, settings, new)
    arrays.update({f"{name}_{key}": value for key, value in samples.items()})
    if new is not None:  # rows no longer follow from the sequences alone
        arrays[f"{name}_positions"] = np.array([t for _, t in rows], dtype=np.int64)
    return samples


def _store_candidates(arrays: dict[str, np.ndarray], name: str, samples: dict[str, np.ndarray],
                      sequences: list[np.ndarray], n_items: int, settings: DataSettings,
                      pool: np.ndarray | None = None) -> None:
    draws = [
        protocol.draw_candidates(samples["users"], samples["targets"], sequences, n_items,
                                 settings.candidates,
                                 protocol.candidate_rng(settings, name, draw=d), pool=pool)
        for d in range(settings.draws)
    ]
    arrays[f"{name}_candidates"] = draws[0]
    if settings.draws > 1:
        arrays[f"{name}_more_candidates"] = np.stack(draws[1:])


def build(raw: RawData, settings: DataSettings) -> tuple[dict, list[dict], list[str], dict]:
    """Apply the protocol to raw data: (counts and skips, items, raw user ids, arrays)."""
    raw_items, item_id = protocol.index_items(raw)
    raw_users, sequences = protocol.user_sequences(raw, item_id)
    eligible = np.array(
        [u for u, s in enumerate(sequences) if len(s) >= protocol.min_length(settings)],
        dtype=np.int64
    )
    with _naming_untitled(raw):
        protocol.check_negative_pool(
            [sequences[u] for u in eligible], [raw_users[u] for u in eligible], len(raw_items),
            settings,
        )
        parts = protocol.split_users(len(eligible), settings)
    arrays: dict[str, np.ndarray] = {
        "seq_items": np.concatenate(sequences),
        "seq_offsets": np.cumsum([0] + [len(s) for s in sequences]).astype(np.int64),
    }
    new = None
    if settings.new_items:
        first_seen = _first_seen(raw, item_id) if settings.new_items_by == "latest" else None
        new_ids = protocol.new_item_ids(len(raw_items), first_seen, settings)
        new = np.zeros(len(raw_items) + 1, dtype=bool)
        new[new_ids] = True
        arrays["new_items"] = new_ids
    dropped = Counter()
    for name in SPLITS:
        rows = protocol.sample_rows(eligible[parts[name]], sequences, settings, name)
        warm, cold, lost = protocol.partition_rows(rows, sequences, settings, name, new)
        dropped += lost
        samples = _store_split(arrays, name, warm, sequences, settings, new)
        if name != "train":
            _store_candidates(arrays, name, samples, sequences, len(raw_items), settings)
        if name != "train" and new is not None:
            samples = _store_split(arrays, f"{name}-new", cold, sequences, settings, new)
            _store_candidates(arrays, f"{name}-new", samples, sequences, len(raw_items),
                              settings)
            _store_candidates(arrays, f"{name}-new-only", samples, sequences,
                              len(raw_items), settings, pool=new)
    items = [
        {"id": item_id[r], "raw_id": r, "title": raw.titles[r], "year": raw.years.get(r)}
        | ({"attributes": raw.attributes[r]} if r in raw.attributes else {})
        for r in raw_items
    ]
    names = [n for n in (*SPLITS, *NEW_SPLITS) if f"{n}_targets" in arrays]
    counts = {
        "users": len(raw_users),
        "items": len(raw_items),
        "interactions": len(raw.interactions),
        **{f"{name}_users": len(parts[name]) for name in SPLITS},
        **{f"{name}_samples": len(arrays[f"{name}_targets"]) for name in names},
        **({"new_items": len(arrays["new_items"])} if new is not None else {}),
        **({"items_with_attributes": len(raw.attributes)} if raw.attributes else {}),
    }
    skipped = raw.skipped + protocol.skipped_short_users(sequences, settings) + dropped
    return {"counts": counts, "skipped": dict(sorted(skipped.items()))}, items, raw_users, arrays


def _options_for_key(options: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in sorted(options.items()):
        if key == "data_dir" and value is not None:
            value = Path(value).expanduser().resolve()
        out[key] = str(value)
    return out


def _sources_unchanged(manifest: dict) -> bool:
    return all(
        Path(src["path"]).is_file() and sha256_file(Path(src["path"])) == src["sha256"]
        for src in manifest["sources"]
    )


def _fresh(folder: Path) -> bool:
    """A complete prepared folder whose source files are unchanged."""
    path = folder / "manifest.json"
    return path.is_file() and _sources_unchanged(read_json(path))


def _load(folder: Path) -> PreparedData:
    manifest = read_json(folder / "manifest.json")
    items = read_jsonl(folder / "items.jsonl")
    users = read_json(folder / "users.json")
    arrays = read_tensors(folder / "arrays.safetensors", "np")
    return PreparedData(folder, manifest, items, users, arrays)


def prepare_data(dataset: str = "ml-100k", options: dict[str, Any] | None = None,
                 settings: DataSettings | None = None, *, home: Path | None = None
                 ) -> tuple[PreparedData, bool]:
    """The prepared data for these inputs, from the cache when present: (data, reused)."""
    options = dict(options or {})
    settings = settings or DataSettings()
    key_fields = {"format": FORMAT, "dataset": dataset, "options": _options_for_key(options),
                  "settings": settings.to_dict()}
    key = sha256_json(key_fields)
    folder = (home or cache_home()) / "data" / f"{dataset}-{key[:16]}"
    if _fresh(folder):
        return _load(folder), True

    _prepare(dataset, options, settings, folder, key_fields | {"key": key})
    return _load(folder), False  # what preparing held is freed first


def _prepare(dataset: str, options: dict[str, Any], settings: DataSettings, folder: Path,
             key_fields: dict[str, Any]) -> None:
    """Read the raw data, apply the protocol and store the result in ``folder``."""
    started = time.perf_counter()
    reader = build_component("dataset", dataset, **options)
    raw = reader.read()
    summary, items, users, arrays = build(raw, settings)
    manifest = {
        **key_fields,
        "hash": _content_hash(arrays, items, users, settings),
        **summary,
        "columns": raw.columns,
        "sources": [{"path": str(Path(p).resolve()), "sha256": sha256_file(p)}
                    for p in raw.sources],
        "llara_kit_version": VERSION,
        "prepare_seconds": round(time.perf_counter() - started, 3),
    }
    with staged_dir(folder, keep=_fresh) as tmp:  # a stale folder (sources changed) is replaced
        save_file(arrays, str(tmp / "arrays.safetensors"))
        write_jsonl(tmp / "items.jsonl", items)
        write_json(tmp / "users.json", users)
        write_json(tmp / "manifest.json", manifest)
