"""The LLaRA protocol: chronological sequences, a user split, samples and candidate sets.

Item ids are 1..N in the order of the raw ids (0 is padding); user indices 0..U-1 likewise.
All randomness comes from generators derived from the settings' seed, so a given input and
settings always give the same arrays.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from llara_kit.data.raw import DataError, RawData
from llara_kit.data.settings import DataSettings

# Streams of the seed's generator family: one per use, so adding one never shifts another.
_SPLIT, _VALID, _TEST, _TRAIN = 0, 1, 2, 3
SPLITS = ("train", "valid", "test")
HELD_OUT = {"llara": 0, "loo": 2}  # items at the end of every sequence kept out of training


def _natural_key(raw_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", raw_id))


def index_items(raw: RawData) -> tuple[list[str], dict[str, int]]:
    """Raw item ids in natural order, and raw id -> item id (1-based)."""
    raw_ids = sorted(raw.titles, key=_natural_key)
    return raw_ids, {r: i + 1 for i, r in enumerate(raw_ids)}


def user_sequences(raw: RawData, item_id: dict[str, int]) -> tuple[list[str], list[np.ndarray]]:
    """Per-user item ids sorted by time; ties keep file order (a stable sort)."""
    events: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for user, item, ts in raw.interactions:
        events[user].append((ts, item_id[item]))
    users = sorted(events, key=_natural_key)
    sequences = [
        np.array([item for _, item in sorted(events[u], key=lambda e: e[0])], dtype=np.int64)
        for u in users
    ]
    return users, sequences


def split_users(n_users: int, settings: DataSettings) -> dict[str, np.ndarray]:
    """User indices of each split. ``llara``: shuffled by the seed and cut train:valid:test
    (sorted within each); ``loo``: every user in every split."""
    if settings.protocol == "loo":
        return dict.fromkeys(SPLITS, np.arange(n_users))
    order = np.random.default_rng([settings.seed, _SPLIT]).permutation(n_users)
    n_train = int(n_users * settings.split[0])
    n_valid = int(n_users * settings.split[1])
    if min(n_train, n_valid, n_users - n_train - n_valid) < 1:
        raise DataError(
            f"Only {n_users} users with enough history: too few to split "
            f"{settings.split}; bring more data or lower min_history."
        )
    cuts = np.split(order, [n_train, n_train + n_valid])
    return {name: np.sort(part) for name, part in zip(SPLITS, cuts, strict=True)}


def target_positions(n: int, split: str, settings: DataSettings) -> range:
    """Positions in a sequence of length ``n`` that are targets of ``split``'s samples.

    Train: every position from ``min_history`` on, before the held-out tail; ``llara`` valid
    and test: the last item; ``loo`` valid: the second-to-last, test: the last.
    """
    if split == "train":
        return range(settings.min_history, n - HELD_OUT[settings.protocol])
    last = n - 1 if settings.protocol == "llara" or split == "test" else n - 2
    return range(last, last + 1)


def min_length(settings: DataSettings) -> int:
    """The shortest sequence that gives every split of the protocol a sample."""
    return settings.min_history + 1 + HELD_OUT[settings.protocol]


def training_part(sequence: np.ndarray, settings: DataSettings) -> np.ndarray:
    """The items of a training user's sequence that training may see."""
    return sequence[: len(sequence) - HELD_OUT[settings.protocol]]


def sample_rows(users: np.ndarray, sequences: list[np.ndarray], settings: DataSettings,
                split: str) -> list[tuple[int, int]]:
    """(user, target position) of every sample of ``split``, in the samples' order."""
    return [(int(u), t) for u in users
            for t in target_positions(len(sequences[u]), split, settings)]


def make_samples(users: np.ndarray, sequences: list[np.ndarray], settings: DataSettings,
                 split: str) -> dict[str, np.ndarray]:
    """Samples as arrays: history (n, H) left-aligned with 0 padding, lengths, targets, users."""
    rows = sample_rows(users, sequences, settings, split)
    history = np.zeros((len(rows), settings.history), dtype=np.int64)
    lengths = np.zeros(len(rows), dtype=np.int64)
    targets = np.zeros(len(rows), dtype=np.int64)
    for r, (u, t) in enumerate(rows):
        window = sequences[u][max(0, t - settings.history) : t]
        history[r, : len(window)] = window
        lengths[r] = len(window)
        targets[r] = sequences[u][t]
    return {
        "users": np.array([u for u, _ in rows], dtype=np.int64),
        "history": history,
        "lengths": lengths,
        "targets": targets,
    }


def check_negative_pool(sequences: list[np.ndarray], raw_users: list[str], n_items: int,
                        settings: DataSettings) -> None:
    """Every user must leave at least candidates - 1 items unseen to draw negatives from."""
    need = settings.candidates - 1
    for u, seq in enumerate(sequences):
        unseen = n_items - len(np.unique(seq))
        if unseen < need:
            raise DataError(
                f"User {raw_users[u]!r} has interacted with {n_items - unseen} of {n_items} "
                f"items, leaving {unseen} to draw {need} negatives from; lower candidates."
            )


def draw_candidates(users: np.ndarray, targets: np.ndarray, sequences: list[np.ndarray],
                    n_items: int, n_candidates: int, rng: np.random.Generator,
                    chunk: int = 4096) -> np.ndarray:
    """(n, C) candidate lists: the target and C-1 distinct negatives the user never
    interacted with, drawn uniformly, in random order."""
    out = np.empty((len(users), n_candidates), dtype=np.int64)
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        keys = rng.random((len(u), n_items + 1), dtype=np.float32)  # (rows, N + 1)
        keys[:, 0] = np.inf  # padding id
        seen = [sequences[x] for x in u]
        rows = np.repeat(np.arange(len(u)), [len(s) for s in seen])
        keys[rows, np.concatenate(seen)] = np.inf
        negatives = np.argpartition(keys, n_candidates - 2, axis=1)[:, : n_candidates - 1]
        lists = np.concatenate([negatives, targets[start : start + chunk, None]], axis=1)
        out[start : start + chunk] = rng.permuted(lists, axis=1)
    return out


def candidate_rng(settings: DataSettings, split: str, epoch: int = 0, draw: int = 0
                  ) -> np.random.Generator:
    """The generator for a split's candidates: fixed per draw for valid/test (draw 0 as
    before draws existed), per epoch for train."""
    stored = [_VALID] if split == "valid" else [_TEST]
    stream = [_TRAIN, epoch] if split == "train" else stored + ([draw] if draw else [])
    return np.random.default_rng([settings.seed, *stream])


def skipped_short_users(sequences: list[np.ndarray], settings: DataSettings) -> Counter:
    need = min_length(settings)
    short = sum(len(s) < need for s in sequences)
    key = f"users with fewer than {need} interactions"
    return Counter({key: short}) if short else Counter()
