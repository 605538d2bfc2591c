"""How samples are built from a data set: the one declaration of the data settings.

``TrainConfig``, the data commands' options and the prepared data's manifest all take these
fields, defaults and help texts from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llara_kit.errors import LlaraKitError

# llara: users cut train:valid:test, their last item the target (the paper's).
# loo: leave-one-out over every user: train on the prefixes, valid = second-to-last item,
# test = last item (SASRec / RecBole's standard, ~10x more test users).
PROTOCOLS = ("llara", "loo")
SPLITS = ("train", "valid", "test")
# With new items held out (``new_items``): the valid and test samples whose target is new,
# with negatives drawn among all items, and the same samples with negatives among new items
# only (``-only``).
NEW_SPLITS = ("valid-new", "test-new", "valid-new-only", "test-new-only")
EVALUATION_SPLITS = ("valid", "test", *NEW_SPLITS)
# Which items a new-item share holds out: a seeded random choice, or those whose first
# interaction is latest (the items a catalogue gained last).
NEW_ITEM_ORDERS = ("random", "latest")


def valid_split_of(split: str) -> str:
    """The valid split that chooses settings for an evaluation split (test-new: valid-new)."""
    return split.replace("test", "valid")


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataSettings:
    """How samples are built. Defaults are the paper's (and its code's min_history)."""

    history: int = _setting(10, "History items per sample.")
    candidates: int = _setting(20, "Candidates per sample (target + negatives).")
    split: tuple[float, float, float] = _setting((0.8, 0.1, 0.1),
                                                 "User shares train,valid,test (protocol llara).")
    min_history: int = _setting(3, "Shortest history a sample may have.")
    seed: int = _setting(0, "Seed of the split and the candidate draws.")
    protocol: str = _setting("llara", "llara: 8:1:1 user split (the paper's); loo: "
                                      "leave-one-out over every user.")
    draws: int = _setting(1, "Negative sets stored for valid and test (the first is the same "
                             "for any count); metrics average over them.")
    new_items: float = _setting(
        0.0, "Share of items held out as new: never in what the encoder or the LLM trains on; "
             "valid and test samples whose target is new form valid-new and test-new (and "
             "valid-new-only, test-new-only: negatives among new items only).")
    new_items_by: str = _setting("random", "Which items are new: random (seeded) or latest "
                                           "(the latest first interactions).")

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise LlaraKitError(
                f"Unknown protocol {self.protocol!r}; use one of: {', '.join(PROTOCOLS)}."
            )
        if self.new_items_by not in NEW_ITEM_ORDERS:
            raise LlaraKitError(f"Unknown new_items_by {self.new_items_by!r}; use one of: "
                                f"{', '.join(NEW_ITEM_ORDERS)}.")
        if not isinstance(self.new_items, (int, float)) or not 0 <= self.new_items < 1:
            raise LlaraKitError(f"Data setting new_items={self.new_items!r} must be a share in "
                                "[0, 1), e.g. 0.2.")
        object.__setattr__(self, "new_items", float(self.new_items))
        object.__setattr__(self, "split", tuple(float(x) for x in self.split))
        for name in ("history", "candidates", "min_history", "draws"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise LlaraKitError(f"Data setting {name}={value!r} must be a positive integer.")
        if self.candidates < 2:
            raise LlaraKitError(f"candidates={self.candidates} must be at least 2 (target + 1).")
        if self.min_history > self.history:
            raise LlaraKitError(
                f"min_history={self.min_history} exceeds history={self.history}; lower it."
            )
        if len(self.split) != 3 or min(self.split) <= 0 or abs(sum(self.split) - 1) > 1e-6:
            raise LlaraKitError(
                f"split={self.split} must be three positive shares summing to 1, e.g. 0.8,0.1,0.1."
            )

    def to_dict(self) -> dict:
        """The settings as JSON; ``draws`` only when above 1 and the new-item settings only
        when items are held out, so that data prepared before they existed keeps its key."""
        out = asdict(self) | {"split": list(self.split)}
        if self.draws == 1:
            del out["draws"]
        if not self.new_items:
            del out["new_items"], out["new_items_by"]
        return out


SETTINGS = {f.name: f for f in fields(DataSettings)}
