"""Assembling a LLaRA model from its parts, and the run folder that stores them.

A run folder holds everything needed to evaluate or serve again: ``config.json`` (resolved,
with component names and versions), ``data.json`` (data set and hash), ``encoder/``
(safetensors + JSON), ``projector.safetensors`` + ``projector.json``,
``objective.safetensors`` (the objective's own weights, e.g. the score head), ``adapter/``
(peft format), ``train_log.jsonl`` and, while training, ``checkpoint/``. Weights load with
safetensors only.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from llara_kit.config import TrainConfig
from llara_kit.data import PreparedData, prepare_data
from llara_kit.encoders import Encoder, load_encoder
from llara_kit.errors import LlaraKitError
from llara_kit.llm import Backbone, load_backbone
from llara_kit.model import LlaraModel
from llara_kit.plugins import build_component
from llara_kit.prompts import PromptTemplate
from llara_kit.storage import atomic_path, staged_dir, write_json


def load_prepared(cfg: TrainConfig, draws: int = 1) -> PreparedData:
    """The run's prepared data, with ``draws`` stored negative sets for valid and test (the
    first is the one the run was trained and evaluated with)."""
    options = dict(cfg.data_options)
    if cfg.data_dir is not None:
        options["data_dir"] = cfg.data_dir
    return prepare_data(cfg.dataset, options, cfg.data_settings(draws))[0]


def add_lora(backbone: Backbone, cfg: TrainConfig) -> PeftModel:
    names = {name.rsplit(".", 1)[-1] for name, _ in backbone.model.named_modules()}
    targets = [t for t in cfg.lora_targets if t in names]
    if not targets:
        raise LlaraKitError(
            f"None of the LoRA targets {list(cfg.lora_targets)} is a module of {cfg.llm!r}; "
            "set lora_targets to its projection names."
        )
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(backbone.model, lora)


def build_projector(cfg: TrainConfig, encoder: Encoder, backbone: Backbone) -> nn.Module:
    return build_component("projector", cfg.projector, encoder.hidden_size,
                           backbone.hidden_size, **cfg.projector_options)


def build_objective(cfg: TrainConfig, backbone: Backbone) -> nn.Module:
    return build_component("objective", cfg.objective, backbone.hidden_size,
                           **cfg.objective_options)


def build_model(cfg: TrainConfig, llm: nn.Module, encoder: Encoder, backbone: Backbone,
                ) -> LlaraModel:
    """The LLaRA model around ``llm`` with a fresh projector and objective."""
    projector = build_projector(cfg, encoder, backbone)
    objective = build_objective(cfg, backbone)
    return LlaraModel(llm, encoder, projector, backbone.behaviour_id, objective,
                      cfg.user_conditioned)


def _save_weights(module: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()},
                  str(tmp))


def save_trainable(model: LlaraModel, cfg: TrainConfig, folder: Path) -> None:
    """The projector and the objective's weights (the LoRA goes through ``save_adapter``)."""
    _save_weights(model.projector, folder / "projector.safetensors")
    _save_weights(model.objective, folder / "objective.safetensors")
    write_json(folder / "projector.json", {"projector": cfg.projector,
                                           "options": cfg.projector_options})


def load_trainable(model: LlaraModel, folder: Path) -> None:
    model.projector.load_state_dict(load_file(folder / "projector.safetensors"))
    objective = folder / "objective.safetensors"  # absent in runs from before objectives
    model.objective.load_state_dict(load_file(objective) if objective.is_file() else {})


def save_adapter(llm: PeftModel, folder: Path) -> None:
    """The LoRA weights in peft format; the resized embeddings are rebuilt on load, not saved."""
    with staged_dir(folder) as tmp:
        llm.save_pretrained(tmp, save_embedding_layers=False)


def save_encoder_copy(encoder_dir: Path, run_dir: Path) -> None:
    with staged_dir(run_dir / "encoder") as tmp:
        for name in ("encoder.safetensors", "encoder.json", "pretrain.json"):
            shutil.copy2(encoder_dir / name, tmp / name)


# Runs written before objectives existed trained the paper's way.
_BEFORE_OBJECTIVES = {"objective": "title", "user_conditioned": False}


def run_config(path: Path) -> TrainConfig:
    """The resolved settings a run folder was trained with (``config.json``)."""
    saved: dict[str, Any] = json.loads((Path(path) / "config.json").read_text())["config"]
    return TrainConfig(**(_BEFORE_OBJECTIVES | saved))


@dataclass
class LoadedRun:
    path: Path
    config: TrainConfig
    model: LlaraModel
    backbone: Backbone
    template: PromptTemplate
    data: PreparedData


def load_run(path: Path, device: str = "cpu", draws: int = 1) -> LoadedRun:
    """Rebuild a trained LLaRA model from its run folder, on data with ``draws`` negative
    sets for valid and test."""
    path = Path(path)
    # summary.json is written last: without it training did not finish (or was killed)
    needed = ("config.json", "data.json", "projector.safetensors", "adapter", "encoder",
              "summary.json")
    missing = [n for n in needed if not (path / n).exists()]
    if missing:
        raise LlaraKitError(
            f"{str(path)!r} is not a finished run folder (missing {', '.join(missing)}); "
            "train one with `llara-kit train` or resume it with --resume."
        )
    cfg = run_config(path)
    data = load_prepared(cfg, draws)
    expected = json.loads((path / "data.json").read_text())["hash"]
    if data.hash != expected:
        raise LlaraKitError(
            f"The prepared data's hash {data.hash[:16]} differs from the run's {expected[:16]}; "
            "the data files changed since training."
        )
    backbone = load_backbone(cfg.llm)
    llm = PeftModel.from_pretrained(backbone.model, path / "adapter")
    model = build_model(cfg, llm, load_encoder(path / "encoder"), backbone)
    load_trainable(model, path)
    model = model.to(device).eval()
    template = build_component("template", cfg.template, **cfg.template_options)
    return LoadedRun(path, cfg, model, backbone, template, data)
