"""Assembling a LLaRA run from its config, the one place that does it: the prepared data, the
encoder (an explicit step: the run's own copy, ``--encoder-dir``, the one ``pretrain`` stored,
or one pre-trained now), the backbone with LoRA, the projector and the objective, for
training, evaluation, zero-shot and ``recommend``. Also the run's weights: the LoRA in peft
format, the projector's and objective's in safetensors (the JSON records: ``run_folder``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from rich.console import Console
from safetensors.torch import save_file
from torch import nn

from llara_kit.config import PretrainSettings, TrainConfig
from llara_kit.data import PreparedData, prepare_data
from llara_kit.distributed import process_device
from llara_kit.encoders import Encoder, load_encoder
from llara_kit.encoders.pretrain import pretrain_encoder, stored_encoders
from llara_kit.errors import LlaraKitError
from llara_kit.model.lengths import Longest, fit_prompts
from llara_kit.model.llara import LlaraModel
from llara_kit.model.llm import Backbone, load_backbone
from llara_kit.model.new_items import ItemSignals, item_signals
from llara_kit.model.prompts import Template
from llara_kit.model.schedules import Schedule, build_schedule
from llara_kit.plugins import build_component
from llara_kit.run_folder import (
    ADAPTER,
    ENCODER,
    read_config,
    read_data_manifest,
    require_finished,
)
from llara_kit.storage import atomic_path, read_json, read_tensors, reading, staged_dir


def load_prepared(cfg: TrainConfig, draws: int = 1) -> PreparedData:
    """The run's prepared data, with ``draws`` stored negative sets for valid and test (the
    first is the one the run was trained and evaluated with)."""
    options = dict(cfg.data_options)
    if cfg.data_dir is not None:
        options["data_dir"] = cfg.data_dir
    return prepare_data(cfg.dataset, options, cfg.data_settings(draws))[0]


# --- the encoder ------------------------------------------------------------------------
@dataclass
class EncoderChoice:
    folder: Path  # safetensors + JSON, as `pretrain` stores them
    how: str  # why this one, for the user
    encoder: Encoder | None = None  # already in memory (pre-trained now), else read the folder
    report: dict | None = None  # its pretrain.json, when in memory


def choose_encoder(cfg: TrainConfig, data: PreparedData, run_dir: Path,
                   show_progress: bool = True) -> EncoderChoice:
    """The encoder a run trains with: the run's own copy (a resumed run), the folder named by
    ``encoder_dir``, the newest one ``pretrain`` stored for this encoder, its options and the
    data, or else one pre-trained now with the default settings."""
    own = Path(run_dir) / ENCODER
    if (own / "encoder.json").is_file():
        return EncoderChoice(own, "the run's own copy")
    if cfg.encoder_dir is not None:
        folder = Path(cfg.encoder_dir)
        _check_stored(folder, cfg.encoder, data)
        return EncoderChoice(folder, "given by --encoder-dir")
    stored = stored_encoders(cfg.encoder, data, cfg.encoder_options)
    if stored:
        return EncoderChoice(stored[0], "stored by `llara-kit pretrain`")
    pre = pretrain_encoder(cfg.encoder, data, cfg.encoder_options,
                           PretrainSettings(seed=cfg.seed), show_progress=show_progress,
                           device=cfg.device)
    return EncoderChoice(pre.path, "pre-trained now with the default settings", pre.encoder,
                         pre.report)


def _check_stored(folder: Path, name: str, data: PreparedData) -> None:
    meta = folder / "encoder.json"
    if not meta.is_file():
        raise LlaraKitError(f"--encoder-dir {str(folder)!r} holds no saved encoder "
                            "(encoder.json); give a folder that `llara-kit pretrain` printed.")
    stored = read_json(meta)["encoder"]
    if stored != name:
        raise LlaraKitError(f"--encoder-dir {str(folder)!r} holds a {stored} encoder, not "
                            f"{name}; pass --encoder {stored}.")
    report = folder / "pretrain.json"
    trained_on = read_json(report)["data_hash"] if report.is_file() else None
    if trained_on not in (None, data.hash):
        raise LlaraKitError(
            f"--encoder-dir {str(folder)!r} was pre-trained on data {trained_on[:16]}, not this "
            f"run's {data.hash[:16]}; pre-train it with the same data settings.")


def run_encoder(path: Path) -> Encoder:
    """The encoder a run folder trained with (its own copy)."""
    return load_encoder(Path(path) / ENCODER)


def describe(choice: EncoderChoice) -> str:
    """One line: which encoder, why, and how it was pre-trained."""
    report_path = choice.folder / "pretrain.json"
    report = choice.report or (read_json(report_path) if report_path.is_file()
                               else None)
    facts = ""
    if report is not None:
        test = report.get("test", {}).get("HR@1", {}).get("value")
        facts = (f" ({report['epochs_run']} epochs of at most {report['settings']['epochs']}"
                 + (f", test HR@1 {test:.3f}" if test is not None else "") + ")")
    return f"encoder: {choice.how}{facts}, {choice.folder}"


def copy_encoder(folder: Path, run_dir: Path) -> None:
    """Copy the chosen encoder into the run folder (before the first step: a resumed run and
    every later evaluation use exactly this one)."""
    if Path(folder).resolve() == (Path(run_dir) / ENCODER).resolve():
        return
    with staged_dir(Path(run_dir) / ENCODER) as tmp:
        for path in Path(folder).iterdir():
            if path.is_file() and path.suffix in (".json", ".safetensors", ".jsonl"):
                shutil.copy2(path, tmp / path.name)


# --- the model --------------------------------------------------------------------------
def _backbone(name: str, dtype: torch.dtype = torch.float32) -> Backbone:
    """The frozen LLM ``name`` with its tokenizer, in ``dtype``: the one place a run loads
    it."""
    return load_backbone(name, dtype)


def _add_lora(backbone: Backbone, cfg: TrainConfig) -> PeftModel:
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


def _build_model(cfg: TrainConfig, llm: nn.Module, encoder: Encoder, backbone: Backbone,
                 signals: ItemSignals | None = None) -> LlaraModel:
    """The LLaRA model around ``llm`` with a fresh projector and objective."""
    projector = build_component("projector", cfg.projector, encoder.hidden_size,
                                backbone.hidden_size, **cfg.projector_options)
    objective = build_component("objective", cfg.objective, backbone.hidden_size,
                                **cfg.objective_options)
    return LlaraModel(llm, backbone, encoder, projector, objective, cfg.user_conditioned,
                      cfg.user_signal, signals, cfg.content_base)


def uses_item_signals(cfg: TrainConfig, data: PreparedData) -> bool:
    """Whether a run reads item texts beyond its prompts: new items to rank, item dropout
    or a content base."""
    return data.has_new_items or cfg.item_dropout > 0 or cfg.content_base


def _template(cfg: TrainConfig) -> Template:
    return build_component("template", cfg.template, **cfg.template_options)


def untuned_model(llm: str, encoder: Encoder, projector: nn.Module,
                  objective: nn.Module) -> LlaraModel:
    """A LLaRA model on the LLM ``llm`` as it comes (no LoRA): the zero-shot baseline's, and
    the contract checks'."""
    backbone = _backbone(llm)
    return LlaraModel(backbone.model, backbone, encoder, projector, objective)


# --- weights ----------------------------------------------------------------------------
def _part(module: nn.Module, state: dict[str, torch.Tensor] | None, prefix: str
          ) -> dict[str, torch.Tensor]:
    """``module``'s weights: its own, or those under ``prefix`` in a whole model's ``state``."""
    if state is None:
        return module.state_dict()
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _save_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def save_trainable(model: LlaraModel, folder: Path,
                   state: dict[str, torch.Tensor] | None = None) -> None:
    """The projector and the objective's weights (the LoRA goes through ``save_adapter``);
    from ``state``, the model's trainable weights gathered from a sharded engine, if given."""
    _save_weights(_part(model.projector, state, "projector."), folder / "projector.safetensors")
    _save_weights(_part(model.objective, state, "objective."), folder / "objective.safetensors")
    for name in ("score_direction", "cold_marker", "content_weights"):
        if getattr(model, name) is not None:
            _save_weights(_part(getattr(model, name), state, f"{name}."),
                          folder / f"{name}.safetensors")


def load_trainable(model: LlaraModel, folder: Path) -> None:
    model.projector.load_state_dict(read_tensors(folder / "projector.safetensors"))
    objective = folder / "objective.safetensors"  # absent in runs from before objectives
    model.objective.load_state_dict(read_tensors(objective) if objective.is_file() else {})
    for name in ("score_direction", "cold_marker", "content_weights"):
        if getattr(model, name) is not None:
            getattr(model, name).load_state_dict(read_tensors(folder / f"{name}.safetensors"))


def save_adapter(llm: PeftModel, folder: Path,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """The LoRA weights in peft format (from the LLaRA model's gathered ``state`` if given);
    the resized embeddings are rebuilt on load, not saved."""
    with staged_dir(folder) as tmp:
        llm.save_pretrained(tmp, save_embedding_layers=False,
                            state_dict=None if state is None else _part(llm, state, "llm."))


# --- a run ---------------------------------------------------------------------------
@dataclass
class Run:
    """A run assembled from its config, by ``new_run`` (to train) or ``load_run`` (trained):
    what training, evaluation, ``recommend``, zero-shot and the benchmarks take."""

    path: Path
    config: TrainConfig
    data: PreparedData  # titles cut to the run's title_tokens
    model: LlaraModel  # the LLM with LoRA and its tokenizer, encoder, projector, objective
    template: Template
    schedule: Schedule  # the curriculum: p_hybrid(progress)
    encoder_choice: EncoderChoice  # where the model's encoder (model.encoder) came from, why

    @property
    def hybrid(self) -> bool:
        """Whether the run ended training on hybrid prompts (text-only runs did not): the
        form it is evaluated and used in."""
        return self.schedule(1.0) >= 0.5


def new_run(cfg: TrainConfig, folder: Path, *, show_progress: bool = True,
            backbone: Backbone | None = None, check: Callable[[Backbone, Longest], None]
            | None = None, frozen_dtype: torch.dtype | None = None,
            console: Console | None = None) -> Run:
    """A run to train into ``folder``: the data, the LLM (``backbone`` stands in for
    ``cfg.llm``: random weights of some shape, for benchmarks), titles cut and prompt lengths
    checked (then ``check``, e.g. the memory a step needs, before any slow work), the encoder
    (``choose_encoder``), and the model with fresh LoRA, projector and objective, initialised
    from the seed (the frozen weights in ``frozen_dtype`` if given)."""
    data = load_prepared(cfg)
    # in the training precision from the start (a 7B model in fp32 would take 27 GB of each
    # process's CPU memory first), except where the frozen LLM reads item texts before
    # training: those vectors are read in fp32, as evaluation reads them
    reads_texts = uses_item_signals(cfg, data)
    dtype = frozen_dtype if frozen_dtype is not None and not reads_texts else torch.float32
    backbone = backbone or _backbone(cfg.llm, dtype)  # before pre-training: a bad --llm fails fast
    template = _template(cfg)
    cut, longest = fit_prompts(cfg, data, backbone, template, ("train",))
    if check is not None:
        check(backbone, longest)
    if cut.cut and console is not None:
        console.print(cut.describe(data.raw_item_ids), soft_wrap=True, markup=False)
    choice = choose_encoder(cfg, data, folder, show_progress)
    # before seeding: building an encoder draws random numbers
    encoder = choice.encoder or load_encoder(choice.folder)
    signals = (item_signals(backbone, cfg.llm, data, encoder, cfg.attribute_tokens, cfg.seed,
                            show_progress)  # the frozen LLM: before LoRA
               if reads_texts else None)
    if frozen_dtype is not None:
        backbone.model.to(frozen_dtype)  # (where not loaded so) LoRA and the heads stay fp32
    torch.manual_seed(cfg.seed)
    llm = _add_lora(backbone, cfg)
    if cfg.gradient_checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = _build_model(cfg, llm, encoder, backbone, signals)
    return Run(Path(folder), cfg, data, model, template,
               build_schedule(cfg.schedule, cfg.schedule_options), choice)


def load_run(path: Path, device: str = "auto", draws: int = 1) -> Run:
    """Rebuild a trained LLaRA run from its folder, on data with ``draws`` negative sets for
    valid and test."""
    path = Path(path)
    require_finished(path)
    cfg = read_config(path)
    data = load_prepared(cfg, draws)
    expected = read_data_manifest(path)["hash"]
    if data.hash != expected:
        raise LlaraKitError(
            f"The prepared data's hash {data.hash[:16]} differs from the run's {expected[:16]}; "
            "the data files, or how this version of llara-kit draws candidates, changed since "
            "training; train the run again.")
    backbone = _backbone(cfg.llm)
    template = _template(cfg)
    fit_prompts(cfg, data, backbone, template, ("valid", "test"))  # cuts titles, checks lengths
    with reading(path / ADAPTER / "adapter_model.safetensors"):
        llm = PeftModel.from_pretrained(backbone.model, path / ADAPTER)
    model = _build_model(cfg, llm, run_encoder(path), backbone, ItemSignals.load(path))
    load_trainable(model, path)
    return Run(path, cfg, data, model.to(process_device(device)).eval(), template,
               build_schedule(cfg.schedule, cfg.schedule_options),
               EncoderChoice(path / ENCODER, "the run's own copy"))


def zero_shot_view(run: Run) -> Run:
    """The same run with the untuned LLM (no LoRA), ranking by title likelihood on text-only
    prompts: the zero-shot baseline."""
    cfg = replace(run.config, objective="title", user_conditioned=False, objective_options={},
                  schedule="text-only", schedule_options={}, content_base=False)
    model = untuned_model(cfg.llm, run.model.encoder, run.model.projector,
                          build_component("objective", cfg.objective, run.model.hidden_size))
    device = next(run.model.parameters()).device
    return replace(run, model=model.to(device).eval(), config=cfg,
                   schedule=build_schedule(cfg.schedule))
