"""The settings of a run: the training configuration (one dataclass, presets, a TOML file,
command-line overrides), the encoder pre-training settings and the evaluation modes.

Precedence, lowest first: field defaults, ``--preset``, the ``--config`` TOML file, options given
on the command line. The resolved config is written into every run folder.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llara_kit.data.settings import SETTINGS, DataSettings
from llara_kit.errors import LlaraKitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# How a run ranks candidates at evaluation: score (by its objective), generate (the paper's
# protocol: free generation, matched to a title), constrained (generation limited to them).
MODES = ("score", "generate", "constrained")
# Which candidates evaluation ranks: stored (the data's stored candidates, the paper's 20
# random) or retrieved (the encoder's top unseen items over the whole catalogue).
CANDIDATE_SOURCES = ("stored", "retrieved")
DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:N."
NEGATIVES = ("random", "shortlist", "mixed")  # what a training sample's candidate list holds
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (dict, list, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _data(name: str, help: str | None = None) -> Any:
    """A data setting, with DataSettings' default and (unless given) help."""
    setting = SETTINGS[name]
    return _f(setting.default, help or setting.metadata["help"])


# Options an objective trains with unless they are given. The head's score is a correction on
# its encoder's (``residual``): it beat the plain head on valid at seeds 0, 1 and 2
# (docs/results.md, examples/benchmarks/seed_pairs.py). Run folders store them resolved.
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {"head": {"residual": True}}


@dataclass
class TrainConfig:
    # components
    encoder: str = _f("sasrec", "Encoder plugin (pre-trained when none is stored).")
    projector: str = _f("mlp", "Projector plugin.")
    schedule: str = _f("linear", "Curriculum schedule plugin.")
    template: str = _f("movie", "Prompt template plugin.")
    template_options: dict = _f({}, "Template options.")
    llm: str = _f("smollm2-135m", "LLM: embedded name, Hugging Face id or local folder.")
    encoder_options: dict = _f({}, "Encoder settings, e.g. n_layers=1.")
    encoder_dir: str | None = _f(
        None, "Folder of a stored encoder to train with (as `llara-kit pretrain` prints it); "
              "default: the newest one pretrain stored for this encoder, its options and the "
              "data, else one pre-trained now.")
    projector_options: dict = _f({}, "Projector options.")
    schedule_options: dict = _f({}, "Schedule options, e.g. switch_at=0.4.")
    objective: str = _f("head", "Training objective plugin: head (score head) or title (paper).")
    objective_options: dict = _f(
        {}, "Objective options, over the objective's defaults (head: residual=true, the "
            "encoder's score as the base of the head's).")
    user_conditioned: bool = _f(
        True, "Candidates' behavioural tokens also carry the encoder's preference for them "
              "(see user_signal; an extension beyond the paper).")
    user_signal: str = _f(
        "score", "What a user-conditioned candidate token adds: score = the encoder's score "
                 "<item, user state> times a learned vector; product = projector(item * "
                 "user state).")
    # training lists (llara_kit/training/lists.py)
    negatives: str = _f(
        "random", "Training lists: random (the paper's 20 random unseen items), shortlist (the "
                  "encoder's top unseen items: hard negatives) or mixed (shortlists with the "
                  "share negatives_schedule gives over training).")
    negatives_schedule: str = _f("linear", "Schedule plugin of the shortlist share (mixed).")
    missing_target: str = _f(
        "skip", "A shortlist without the target: skip (a random list instead, or the sample "
                "is not drawn) or inject (the target replaces its last item).")
    cross_fit: int = _f(
        0, "Folds of cross-fitted encoders that shortlist and score training samples "
           "(0 = the run's encoder, which trained on them: leaky).")
    # prompt lengths (llara_kit/model/lengths.py)
    title_tokens: int = _f(
        48, "Longest title in tokens; longer ones are cut, with an ellipsis (0 = whole "
            "titles).")
    max_prompt_tokens: int = _f(
        0, "Refuse to start when a prompt would be longer than this (0 = the LLM's context "
           "length).")
    # items the encoder never trained on, and item text (llara_kit/model/new_items.py)
    item_text: str = _f(
        "title", "What prompts show of an item: title, or attributes (the title with the "
                 "year and the item's attributes: genres, tags).")
    attribute_tokens: int = _f(16, "Most tokens of an item's attributes in a prompt (whole "
                                   "attributes are kept while they fit; 0 = all).")
    item_dropout: float = _f(
        0.0, "Share of training candidates shown as if new: their embedding and encoder score "
             "come from their text (as a new item's do), so the LLM learns to rank both.")
    content_base: bool = _f(
        False, "The residual head's base also reads the frozen LLM's history-candidate "
               "similarity of the item texts and cold indicators, its weights fitted on "
               "training lists before the LLM trains.")
    # data
    dataset: str = _f("ml-100k", "Data-set plugin.")
    data_dir: str | None = _f(None, "Folder of the data set's files.")
    data_options: dict = _f({}, "Data-set plugin options.")
    history: int = _data("history")
    candidates: int = _data("candidates")
    split: tuple = _data("split")
    min_history: int = _data("min_history")
    protocol: str = _data("protocol")
    seed: int = _data("seed", "Seed of the data split, candidates, curriculum draws and dropout.")
    new_items: float = _data("new_items")
    new_items_by: str = _data("new_items_by")
    # LoRA
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    lora_dropout: float = _f(0.1, "LoRA dropout.")
    lora_targets: tuple = _f(LORA_TARGETS, "Modules that get LoRA.")
    # optimisation
    epochs: int = _f(1, "Passes over the training samples.")
    # 8 samples per optimizer step, in micro-batches of 2: the same gradient as one batch of 8,
    # with a third of the peak memory on a CPU (docs/results.md, "Memory of the default run").
    # On a GPU use larger micro-batches, e.g. --batch-size 32 --grad-accum 1.
    batch_size: int = _f(2, "Samples per micro-batch, all processes together.")
    grad_accum: int = _f(4, "Micro-batches per optimizer step.")
    lr: float = _f(8e-4, "Peak learning rate (paper, MovieLens: 8e-4).")
    new_lr: float | None = _f(
        None, "Peak learning rate of the parts trained from scratch: projector, objective "
              "head, score direction (default: lr).")
    warmup: float = _f(0.05, "Share of steps warming up linearly from lr/100 to lr.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).")
    max_train_samples: int | None = _f(
        None, "Train on a random subset of this size (0 = all; default: all on a GPU, "
              "a ~10-minute subset on a CPU).")
    # hardware and bookkeeping
    device: str = _f("auto", DEVICE_HELP)
    precision: str = _f("auto", "auto (bf16 where supported), bf16 or fp32.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")
    compile: bool = _f(False, "torch.compile each decoder layer (GPU; the first steps are slower).")
    checkpoint_every: int = _f(25, "Optimizer steps between checkpoints.")

    def __post_init__(self) -> None:
        self.objective_options = (OBJECTIVE_DEFAULTS.get(self.objective, {})
                                  | self.objective_options)
        self.split = tuple(float(x) for x in self.split)
        self.lora_targets = tuple(self.lora_targets)
        positive = ("history", "candidates", "min_history", "lora_r", "lora_alpha", "epochs",
                    "batch_size", "grad_accum", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LlaraKitError(f"Setting {name}={value!r} must be a positive integer.")
        for name in ("lr", "new_lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise LlaraKitError(f"Setting {name}={value!r} must be a positive number.")
        if not 0 <= self.warmup < 1 or not 0 <= self.lora_dropout < 1:
            raise LlaraKitError("Settings warmup and lora_dropout must lie in [0, 1).")
        if self.max_train_samples is not None and self.max_train_samples < 0:
            raise LlaraKitError(
                f"Setting max_train_samples={self.max_train_samples!r} must be >= 0 (0 = all)."
            )
        if self.user_signal not in ("product", "score"):
            raise LlaraKitError(f"Setting user_signal={self.user_signal!r}: use product or score.")
        for name, allowed in (("negatives", NEGATIVES), ("missing_target", ("skip", "inject"))):
            if getattr(self, name) not in allowed:
                raise LlaraKitError(f"Setting {name}={getattr(self, name)!r}: use "
                                    f"{', '.join(allowed[:-1])} or {allowed[-1]}.")
        for name in ("title_tokens", "max_prompt_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise LlaraKitError(f"Setting {name}={value!r} must be a whole number >= 0 "
                                    "(0 = no limit).")
        if self.cross_fit == 1 or self.cross_fit < 0:
            raise LlaraKitError(f"Setting cross_fit={self.cross_fit!r}: use 0 (off) or a fold "
                                "count of at least 2.")
        if self.item_text not in ("title", "attributes"):
            raise LlaraKitError(f"Setting item_text={self.item_text!r}: use title or attributes.")
        if not isinstance(self.item_dropout, (int, float)) or not 0 <= self.item_dropout < 1:
            raise LlaraKitError(f"Setting item_dropout={self.item_dropout!r} must be a share in "
                                "[0, 1), e.g. 0.2.")
        if not isinstance(self.attribute_tokens, int) or self.attribute_tokens < 0:
            raise LlaraKitError(f"Setting attribute_tokens={self.attribute_tokens!r} must be a "
                                "whole number >= 0 (0 = all attributes).")
        if self.content_base and not (self.objective == "head"
                                      and self.objective_options.get("residual")):
            raise LlaraKitError("Setting content_base extends the residual head's base; use it "
                                "with --objective head (residual, the default).")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise LlaraKitError(f"Setting precision={self.precision!r}: use auto, bf16 or fp32.")

    def data_settings(self, draws: int = 1) -> DataSettings:
        """How the run's samples are built, with ``draws`` stored negative sets."""
        return DataSettings(**{name: getattr(self, name) for name in SETTINGS
                               if name != "draws"}, draws=draws)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["split"], out["lora_targets"] = list(self.split), list(self.lora_targets)
        return out


@dataclass(frozen=True)
class PretrainSettings:
    """Training settings; defaults follow the paper's recommenders (Adam, lr 1e-3, batch 256)."""

    # On ML-100K validation MRR plateaus within ~10 epochs; 15 keeps each built-in encoder
    # under 3 minutes on 2 CPU cores.
    epochs: int = 15
    patience: int = 3  # epochs without a better validation MRR before stopping
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.0  # Adam's L2 (the paper searched 1e-3 .. 1e-7)
    seed: int = 0
    # 0: the exact softmax over every item; K: a softmax over K items drawn per batch,
    # for catalogues whose (batch x items) logits do not fit (docs/encoders.md)
    sampled_softmax: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise LlaraKitError(f"Pre-training {name}={getattr(self, name)!r} must be >= 1.")
        if self.sampled_softmax < 0:
            raise LlaraKitError(f"Pre-training sampled_softmax={self.sampled_softmax!r} must "
                                "be >= 0 (0: the exact softmax over every item).")
        if self.lr <= 0 or self.weight_decay < 0:
            raise LlaraKitError(
                f"lr={self.lr!r} must be > 0 and weight_decay={self.weight_decay!r} >= 0."
            )



PRESETS: dict[str, dict[str, Any]] = {
    # The paper's protocol: 5 epochs over every train sample, effective batch 128 (8 x 16).
    "paper": {"epochs": 5, "batch_size": 8, "grad_accum": 16, "lr": 8e-4,
              "max_train_samples": 0, "objective": "title", "user_conditioned": False},
}

FIELDS = {f.name: f for f in fields(TrainConfig)}


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise LlaraKitError(
            f"Unknown setting {unknown[0]!r} in {where}; settings are: {', '.join(FIELDS)}."
        )


def load_toml(path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlaraKitError(f"Config file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise LlaraKitError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
    values = {k.replace("-", "_"): v for k, v in values.items()}
    _check_keys(values, str(path))
    return values


def resolve(preset: str | None = None, config_file: Path | None = None,
            overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults < preset < TOML file < overrides (None values in overrides are not given)."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise LlaraKitError(f"Unknown preset {preset!r}. Available: {', '.join(PRESETS)}.")
        values.update(PRESETS[preset])
    if config_file is not None:
        values.update(load_toml(config_file))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(given, "the options")
    values.update(given)
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise LlaraKitError(f"Bad settings: {exc}.") from None


def field_default(name: str) -> Any:
    f = FIELDS[name]
    return f.default_factory() if f.default is MISSING else f.default
