"""The LLaRA protocol: chronological sequences, a user split, samples and candidate sets.

Item ids are 1..N in the order of the raw ids (0 is padding); user indices 0..U-1 likewise.
All randomness comes from generators derived from the settings' seed, so a given input and
settings always give the same arrays.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from llara_kit.data.raw import DataError, RawData
from llara_kit.data.settings import NEW_SPLITS, SPLITS, DataSettings

# Streams of the seed's generator family: one per use, so adding one never shifts another.
_SPLIT, _VALID, _TEST, _TRAIN, _NEW, _NEW_DRAWS = 0, 1, 2, 3, 4, 5

HELD_OUT = {"llara": 0, "loo": 2}  # items at the end of every sequence kept out of training


def _natural_key(raw_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", raw_id))


def index_items(raw: RawData) -> tuple[list[str], dict[str, int]]:
    """Raw item ids in natural order, and raw id -> item id (1-based)."""
    raw_ids = sorted(raw.titles, key=_natural_key)
    return raw_ids, {r: i + 1 for i, r in enumerate(raw_ids)}


def user_sequences(raw: RawData, item_id: dict[str, int]) -> tuple[list[str], list[np.ndarray]]:
    """Per-user item ids sorted by time; ties keep file order (a stable sort). The sequences
    are views of one array."""
    n, code = len(raw.interactions), {}
    users_of = np.fromiter((code.setdefault(u, len(code)) for u, _, _ in raw.interactions),
                           dtype=np.int64, count=n)  # (n,) codes in order of first appearance
    items = np.fromiter((item_id[i] for _, i, _ in raw.interactions), dtype=np.int64, count=n)
    times = np.fromiter((ts for _, _, ts in raw.interactions), dtype=np.float64, count=n)
    users = sorted(code, key=_natural_key)
    place = np.empty(len(users), dtype=np.int64)  # code -> index in ``users``
    place[[code[u] for u in users]] = np.arange(len(users))
    owner = place[users_of]
    order = np.lexsort((times, owner))  # by user, then time; stable, so ties keep file order
    ends = np.cumsum(np.bincount(owner, minlength=len(users)))
    return users, np.split(items[order], ends[:-1])


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


def new_item_ids(n_items: int, first_seen: np.ndarray | None, settings: DataSettings
                 ) -> np.ndarray:
    """The sorted ids of the items held out as new: ``new_items`` of them, at random (seeded)
    or those whose first interaction is latest (``first_seen``: (n_items + 1,) times, needed
    for ``new_items_by`` "latest" only)."""
    k = round(settings.new_items * n_items)
    if settings.new_items_by == "random":
        order = np.random.default_rng([settings.seed, _NEW]).permutation(n_items) + 1
    else:
        order = np.argsort(-first_seen[1:], kind="stable") + 1
    return np.sort(order[:k])


def seen_by_models(sequence: np.ndarray, t: int, new: np.ndarray | None) -> np.ndarray:
    """The items before position ``t`` that the models may read: new ones (``new``: (n_items
    + 1,) bool) are cut out."""
    before = sequence[:t]
    return before if new is None else before[~new[before]]


def partition_rows(rows: list[tuple[int, int]], sequences: list[np.ndarray],
                   settings: DataSettings, split: str, new: np.ndarray | None
                   ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], Counter]:
    """(rows whose target is warm, rows whose target is new, what was dropped and why).

    Without new items every row is warm. With them a training row needs ``min_history`` warm
    items before its target and a new target is dropped (nothing trains on new items); an
    evaluation row needs one warm item before its target."""
    if new is None:
        return rows, [], Counter()
    need = settings.min_history if split == "train" else 1
    warm, cold, dropped = [], [], Counter()
    for u, t in rows:
        if len(seen_by_models(sequences[u], t, new)) < need:
            dropped[f"{split} samples with fewer than {need} warm items before the target"] += 1
        elif not new[sequences[u][t]]:
            warm.append((u, t))
        elif split == "train":
            dropped["train samples whose target is a new item"] += 1
        else:
            cold.append((u, t))
    return warm, cold, dropped


def make_samples(rows: list[tuple[int, int]], sequences: list[np.ndarray],
                 settings: DataSettings, new: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Samples of (user, target position) ``rows`` as arrays: history (n, H) left-aligned
    with 0 padding (new items cut out), lengths, targets, users."""
    history = np.zeros((len(rows), settings.history), dtype=np.int64)
    lengths = np.zeros(len(rows), dtype=np.int64)
    targets = np.zeros(len(rows), dtype=np.int64)
    for r, (u, t) in enumerate(rows):
        window = seen_by_models(sequences[u], t, new)[-settings.history:]
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
                    chunk: int = 8192, pool: np.ndarray | None = None) -> np.ndarray:
    """(n, C) candidate lists: the target and C-1 distinct negatives the user never
    interacted with, drawn uniformly (among ``pool``, an (n_items + 1,) bool mask, if
    given), in random order; ``chunk`` rows at a time. The cost per row does not grow with
    the catalogue (see ``_unseen_draws``)."""
    items = np.arange(1, n_items + 1) if pool is None else np.flatnonzero(pool[1:]) + 1
    out = np.empty((len(users), n_candidates), dtype=np.int64)
    for start in range(0, len(users), chunk):
        rows = slice(start, start + chunk)
        negatives = _unseen_draws(users[rows], sequences, items, n_items, n_candidates - 1,
                                  rng, pooled=pool is not None)  # (rows, C - 1)
        lists = np.concatenate([negatives, targets[rows, None]], axis=1)
        out[rows] = rng.permuted(lists, axis=1)
    return out


def _unseen_draws(u: np.ndarray, sequences: list[np.ndarray], items: np.ndarray, n_items: int,
                  k: int, rng: np.random.Generator, pooled: bool) -> np.ndarray:
    """(rows, k): for each user index in ``u``, k distinct items of ``items`` it never saw.

    Rejection: every empty slot draws an item of ``items`` uniformly; a slot whose item the
    user saw, or that an earlier-filled or lower slot of the row holds, is emptied; rows with
    an empty slot draw again. The rule treats every unseen item alike, so every ordered
    k-tuple of distinct unseen items is equally likely; a row costs about k / (its unseen
    share of ``items``) draws, whatever the catalogue's size."""
    width = n_items + 1
    seen = [sequences[x] for x in u]
    owner = np.repeat(np.arange(len(u)), [len(s) for s in seen])
    seen_keys = np.unique(owner * width + np.concatenate(seen))  # row * width + item, sorted
    listed = np.zeros(width, dtype=bool)
    listed[items] = True
    unseen = len(items) - np.bincount(seen_keys // width, weights=listed[seen_keys % width],
                                      minlength=len(u))
    if (unseen < k).any():
        short = int(np.argmax(unseen < k))
        raise DataError(
            f"A sample of user index {int(u[short])} has {int(unseen[short])} unseen items to "
            f"draw {k} negatives from{' among the new items' if pooled else ''}; "
            f"lower candidates{' or raise new_items' if pooled else ''}.")
    drawn = np.zeros((len(u), k), dtype=np.int64)  # 0: empty (0 is never among items)
    slot = np.tile(np.arange(k), len(u))
    pending = np.arange(len(u))
    while pending.size:
        block = drawn[pending]  # (p, k)
        empty = block == 0
        block[empty] = items[rng.integers(len(items), size=int(empty.sum()))]
        keys = (pending[:, None] * width + block).ravel()  # (p * k,)
        at = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
        reject = seen_keys[at] == keys
        order = np.lexsort((slot[: keys.size], empty.ravel(), keys))  # filled first, then slot
        repeated = np.zeros(keys.size, dtype=bool)
        repeated[order[1:]] = keys[order[1:]] == keys[order[:-1]]
        block[(reject | repeated).reshape(block.shape)] = 0
        drawn[pending] = block
        pending = pending[(block == 0).any(axis=1)]
    return drawn


def candidate_rng(settings: DataSettings, split: str, epoch: int = 0, draw: int = 0
                  ) -> np.random.Generator:
    """The generator for a split's candidates: fixed per draw for valid/test (draw 0 as
    before draws existed) and each new-item split, per epoch for train."""
    if split in NEW_SPLITS:
        return np.random.default_rng([settings.seed, _NEW_DRAWS, NEW_SPLITS.index(split), draw])
    stored = [_VALID] if split == "valid" else [_TEST]
    stream = [_TRAIN, epoch] if split == "train" else stored + ([draw] if draw else [])
    return np.random.default_rng([settings.seed, *stream])


def skipped_short_users(sequences: list[np.ndarray], settings: DataSettings) -> Counter:
    need = min_length(settings)
    short = sum(len(s) < need for s in sequences)
    key = f"users with fewer than {need} interactions"
    return Counter({key: short}) if short else Counter()
