"""LLaRA training: LoRA on the LLM, the projector, and the curriculum, with checkpoints.

All randomness is derived from (seed, micro-batch index): sample order, hybrid-or-text draws,
phrasings and dropout. A resumed run therefore continues exactly where it stopped, and the
trainer, not a data-loader worker, owns the curriculum state.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import DistributedType
from peft import set_peft_model_state_dict
from rich.console import Console
from safetensors.torch import save_file
from torch import nn

from llara_kit import run_folder
from llara_kit.config import TrainConfig
from llara_kit.data import target_positions
from llara_kit.devices import bf16_supported, free_memory
from llara_kit.distributed import (
    allow_unused_gradients,
    configure_deepspeed,
    largest_share,
    make_accelerator,
    my_share,
    trainable_state,
)
from llara_kit.errors import LlaraKitError
from llara_kit.model.batching import Batch, collate
from llara_kit.model.lengths import Longest, step_memory
from llara_kit.model.llm import Backbone
from llara_kit.model.new_items import candidate_signals
from llara_kit.model.schedules import build_schedule
from llara_kit.plugins import KINDS, get_component
from llara_kit.progress import Progress
from llara_kit.run import (
    copy_encoder,
    describe,
    load_trainable,
    new_run,
    save_adapter,
    save_trainable,
)
from llara_kit.storage import complete_dir, read_tensors, staged_dir, writing
from llara_kit.training.base_fit import FIT_SAMPLES, fit_base
from llara_kit.training.lists import training_lists

# Streams of the seed's generator family (see data/protocol.py for the data's own streams).
_SUBSET, _ORDER, _HYBRID, _PHRASING, _SHORTLIST, _DROPOUT, _BASE_FIT = range(101, 108)
# Train samples of the default CPU run: ~9 minutes at ~0.47 samples/s (2 AVX2 cores, fp32;
# examples/benchmarks/quality.py chose the objective and form at this budget).
CPU_SUBSET = 256
# Settings that may change between a run and its --resume.
RESUMABLE = {"device", "precision", "checkpoint_every", "gradient_checkpointing", "compile",
             "max_prompt_tokens"}


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.precision == "fp32":
        return False
    if not bf16_supported(device) and cfg.precision == "bf16":
        raise LlaraKitError(f"precision=bf16 but {device} has no bf16 support; use fp32 or auto.")
    return bf16_supported(device)


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up from lr/100 to lr, then cosine decay to 0."""
    warm = max(1, round(cfg.warmup * total)) if cfg.warmup > 0 else 0
    if step < warm:
        return cfg.lr * (0.01 + 0.99 * step / warm)
    done = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The LoRA at ``lr``; the parts trained from scratch (``model.new_parts()``) at
    ``new_lr``. ``scale`` multiplies the scheduled learning rate of each group."""
    new = {id(p) for part in model.new_parts() for p in part.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in new], "scale": 1.0},
              {"params": [p for p in trainable if id(p) in new],
               "scale": (cfg.new_lr or cfg.lr) / cfg.lr}]
    return [g for g in groups if g["params"]]


def _rng(cfg: TrainConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, *stream])


@dataclass
class Plan:
    """Which train samples go into each micro-batch, epoch by epoch."""

    samples: np.ndarray  # indices into the train split
    micro_per_epoch: int
    total_steps: int


class Trainer:
    """One process's part of a run (see ``llara_kit.distributed``): ``assembled`` is the run
    (``new_run``: data, model, template, schedule, encoder); the trainer adds what training
    needs: the accelerator, the optimizer, the plan and the loop. ``model`` is the LLaRA
    module, ``engine`` the same module as accelerate prepared it (DDP-wrapped when launched
    on several processes), which the loop calls."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, console: Console | None = None,
                 show_progress: bool = True, backbone: Backbone | None = None,
                 resume: bool = False):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.accelerator, self.device = make_accelerator(cfg.device, cfg.grad_accum)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.console = (console or Console(stderr=True)) if self.is_main else Console(quiet=True)
        self.show_progress = show_progress and self.is_main
        self.bf16 = use_bf16(cfg, self.device)

        with self.accelerator.main_process_first():  # rank 0 writes the caches, others read
            self.assembled = new_run(
                cfg, self.run_dir, show_progress=self.show_progress, backbone=backbone,
                check=self.check_memory, console=self.console,
                frozen_dtype=torch.bfloat16 if self.bf16 and self.device.type == "cuda" else None)
            self.lists = training_lists(cfg, self.assembled.data, self.assembled.model.encoder,
                                        self.show_progress)
        self.data, self.model = self.assembled.data, self.assembled.model.to(self.device)
        self.console.print(describe(self.assembled.encoder_choice), soft_wrap=True, markup=False)
        if self.model.content_weights is not None:
            self.fit_content_base()
        if self.lists.mined is not None:
            self.console.print(
                f"training lists: {cfg.negatives}; the target is in {self.lists.recall():.1%} "
                f"of the train samples' shortlists ({cfg.cross_fit or 'no'} cross-fitting "
                "folds)", soft_wrap=True, markup=False)
        if cfg.compile:
            for layer in self.model.llm.get_decoder().layers:
                layer.compile(dynamic=True)  # per layer: one graph, reused 30 times
        optimizer = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        configure_deepspeed(self.accelerator, cfg.batch_size, cfg.grad_accum, cfg.max_grad_norm,
                            self.bf16)
        # into the whole model, before an engine shards it or copies it into master weights
        self.checkpoint = self.load_checkpoint_weights() if resume else None
        self.engine, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        allow_unused_gradients(self.engine, self.model)
        # after prepare: FSDP puts sharded tensors in place of the parameters
        self.params = [p for p in self.engine.parameters() if p.requires_grad]
        self.plan = self._make_plan()
        n_train = len(self.data.splits["train"])
        if cfg.max_train_samples is None and len(self.plan.samples) < n_train:
            self.console.print(
                f"No GPU: training on {len(self.plan.samples):,} of {n_train:,} train samples "
                "(the progress line's ETA, from the steps so far, says how long); "
                "--max-train-samples sets another budget, --full runs the paper's protocol.",
                soft_wrap=True)

    def check_memory(self, backbone: Backbone, longest: Longest) -> None:
        """Refuse, in one sentence, a run whose training micro-batch of the longest prompts
        would not fit in the memory free on its device (the weights are loaded by now)."""
        config, cfg = backbone.model.config, self.cfg
        batch = largest_share(cfg.batch_size, self.world)  # one process's micro-batch
        bf16 = self.bf16 and self.device.type == "cuda"
        need = step_memory(config.num_hidden_layers, config.hidden_size,
                           config.num_attention_heads, batch, longest.tokens,
                           2 if bf16 else 4, cfg.gradient_checkpointing)
        # the processes of one host share its memory
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if self.device.type == "cpu" else 1
        need *= local
        free = free_memory(self.device)
        if need > free:
            raise LlaraKitError(
                f"A training micro-batch of {batch} prompts of up to {longest.tokens:,} "
                f"tokens needs about {need / 2**30:.1f} GiB ({'bf16' if bf16 else 'fp32'}"
                f"{f', {local} processes' if local > 1 else ''}) but "
                f"{free / 2**30:.1f} GiB is free on {self.device.type}; lower --batch-size (and "
                "raise --grad-accum), --title-tokens or --history, or pass "
                "--gradient-checkpointing.")

    # --- planning -----------------------------------------------------------------------
    def subset_size(self) -> int:
        n = len(self.data.splits["train"])
        wanted = self.cfg.max_train_samples
        if wanted is None:
            wanted = 0 if self.device.type == "cuda" else CPU_SUBSET
        return n if wanted == 0 else min(wanted, n)

    def _make_plan(self) -> Plan:
        pool = self.lists.pool()
        size = min(self.subset_size(), len(pool))
        samples = pool if size == len(pool) else np.sort(
            _rng(self.cfg, _SUBSET).choice(pool, size=size, replace=False))
        micro = math.ceil(size / self.cfg.batch_size)  # the same for any number of processes
        total = math.ceil(self.cfg.epochs * micro / self.cfg.grad_accum)
        return Plan(samples, micro, total)

    @cache  # noqa: B019 - one trainer per run; an epoch's plan is reused by every micro-batch
    def _epoch(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """(micro-batches of sample indices, this epoch's random candidate lists of the plan's
        samples, in their order: ``random_lists`` finds a sample's)."""
        samples = self.plan.samples  # sorted
        cands = self.data.train_candidates(epoch, samples)  # (n, C): drawn for these only
        rng = _rng(self.cfg, _ORDER, epoch)
        order = rng.permutation(samples)
        titles = np.array([len(t) for t in self.data.item_texts])
        history = self.data.splits["train"].history
        listed = cands[np.searchsorted(samples, order)]
        size = titles[history[order]].sum(1) + titles[listed].sum(1)  # prompt length proxy
        group = self.cfg.batch_size * 16  # sort within groups so batches need little padding
        batches = []
        for start in range(0, len(order), group):
            chunk = order[start : start + group]
            chunk = chunk[np.argsort(size[start : start + group], kind="stable")]
            batches += [chunk[i : i + self.cfg.batch_size]
                        for i in range(0, len(chunk), self.cfg.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))], cands

    def random_lists(self, epoch: int, idx: np.ndarray) -> np.ndarray:
        """(B, C) the random candidate lists of the plan's samples ``idx`` in ``epoch``."""
        return self._epoch(epoch)[1][np.searchsorted(self.plan.samples, idx)]

    def global_micro_batch(self, g: int) -> np.ndarray:
        """Sample indices of global micro-batch ``g`` (over all epochs; every rank's)."""
        epoch, j = divmod(g, self.plan.micro_per_epoch)
        return self._epoch(epoch)[0][j]

    def micro_batch(self, g: int, p_hybrid: float, p_shortlist: float = 0.0) -> Batch:
        """This rank's slice of micro-batch ``g``, on its device (a stand-in sample where it
        has none, see ``my_share``): hybrid samples drawn with ``p_hybrid``, shortlists with
        ``p_shortlist`` (the draws are made for the whole micro-batch, so they do not depend on
        the rank count), with each candidate's encoder score."""
        idx = self.global_micro_batch(g)
        train = self.data.splits["train"]
        targets = train.targets[idx]
        cands, short = self.candidate_lists(g, p_shortlist)
        hybrid = _rng(self.cfg, _HYBRID, g).random(len(idx)) < p_hybrid
        phrasing = _rng(self.cfg, _PHRASING, g).integers(0, 1 << 16, size=len(idx))
        # candidates shown as new (item dropout), (B, C)
        dropped = _rng(self.cfg, _DROPOUT, g).random(cands.shape) < self.cfg.item_dropout
        mine, _ = my_share(len(idx), self.rank, self.world)
        idx, targets, cands, hybrid, phrasing, dropped = (
            a[mine] for a in (idx, targets, cands, hybrid, phrasing, dropped))
        prompts = [
            self.assembled.template.render(self.data.item_texts, train.history_of(i),
                                           c.tolist(), bool(h), int(ph))
            for i, c, h, ph in zip(idx, cands, hybrid, phrasing, strict=True)
        ]
        answers = [self.model.objective.answer(self.data.titles[t]) for t in targets]
        base, cold, content = self.candidate_scores(idx, cands, dropped)
        return collate(self.model, prompts, answers, target_positions(cands, targets).tolist(),
                       base_scores=base, cold=cold, content=content).to(self.device)

    def candidate_scores(self, idx: np.ndarray, cands: np.ndarray, dropped: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The encoder scores (B, C) of train samples ``idx`` and their candidates ``cands``,
        and with item signals which candidates are shown as new and their content scores:
        ``dropped`` (B, C) shows a candidate as new (item dropout), its encoder score then the
        imputed embedding's (the run's encoder's user state)."""
        base = self.lists.base_scores(self.data, idx, cands)
        signals = self.model.signals
        if signals is None:
            return base, None, None
        train = self.data.splits["train"]
        history, lengths = train.history[idx], train.lengths[idx]
        if dropped.any():
            imputed = signals.imputed_scores(self.model.encoder, history, lengths, cands)
            base = np.where(dropped, imputed, base).astype(np.float32)
        cold, content = candidate_signals(signals, history, lengths, cands, dropped)
        return base, cold, content

    def fit_content_base(self) -> None:
        """Start the residual base's weights at their fit on training lists (base_fit.py)."""
        n = len(self.data.splits["train"])
        rng = _rng(self.cfg, _BASE_FIT)
        idx = np.sort(rng.choice(n, size=min(FIT_SAMPLES, n), replace=False))
        cands = self.data.train_candidates(0, idx)
        dropped = rng.random(cands.shape) < self.cfg.item_dropout
        base, cold, content = self.candidate_scores(idx, cands, dropped)
        targets = self.data.splits["train"].targets[idx]
        alpha, weights = fit_base(base, cold, content, target_positions(cands, targets))
        with torch.no_grad():
            self.model.objective.alpha.fill_(alpha)
            self.model.content_weights.weight.copy_(torch.from_numpy(weights)[None])
        self.console.print(
            f"content base fitted on {len(idx):,} training lists: encoder {alpha:.3f}, content "
            f"{weights[0]:.3f}, content if cold {weights[1]:.3f}, cold {weights[2]:.3f}, "
            f"encoder if cold {weights[3]:.3f}", soft_wrap=True, markup=False)

    def candidate_lists(self, g: int, p_shortlist: float) -> tuple[np.ndarray, np.ndarray]:
        """Micro-batch ``g``'s (B, C) candidate lists and (B,) which are shortlists."""
        idx = self.global_micro_batch(g)
        random_lists = self.random_lists(g // self.plan.micro_per_epoch, idx)
        wanted = _rng(self.cfg, _SHORTLIST, g).random(len(idx)) < p_shortlist
        return self.lists.candidates(idx, random_lists, wanted,
                                     self.data.splits["train"].targets[idx],
                                     _rng(self.cfg, _SHORTLIST, g, 1))

    # --- checkpoints ----------------------------------------------------------------------
    @property
    def sharded(self) -> bool:
        """Whether FSDP or DeepSpeed splits the weights and optimizer state over the ranks."""
        return self.accelerator.distributed_type in (DistributedType.FSDP,
                                                     DistributedType.DEEPSPEED)

    def save_checkpoint(self, step: int) -> None:
        """Rank 0 writes; the optimizer moments only where every rank holds them whole (one
        process, DDP): a sharded run resumes its weights with fresh moments."""
        state = trainable_state(self.engine)
        if self.is_main:
            with staged_dir(run_folder.checkpoint_path(self.run_dir)) as tmp:
                save_adapter(self.model.llm, tmp / "adapter", state)
                save_trainable(self.model, tmp, state)
                if not self.sharded:
                    save_file(_optimizer_tensors(self.optimizer, self.params),
                              str(tmp / "optimizer.safetensors"))
                run_folder.write_checkpoint_state(tmp, step)
        self.accelerator.wait_for_everyone()

    def load_checkpoint_weights(self) -> Path | None:
        """The checkpoint's LoRA, projector and objective weights into the unprepared model
        (every rank reads them); its folder, or None when there is none yet."""
        ckpt = complete_dir(run_folder.checkpoint_path(self.run_dir),
                            run_folder.CHECKPOINT_STATE)
        if ckpt is not None:
            adapter = read_tensors(ckpt / "adapter" / "adapter_model.safetensors")
            set_peft_model_state_dict(self.model.llm, adapter)
            load_trainable(self.model, ckpt)
        return ckpt

    def load_checkpoint_state(self) -> int:
        """The optimizer's moments (when the checkpoint holds them) into the prepared
        optimizer; the step to continue from (0 without a checkpoint)."""
        ckpt = self.checkpoint
        if ckpt is None:
            return 0
        if (ckpt / "optimizer.safetensors").is_file():
            _load_optimizer(self.optimizer, self.params,
                            read_tensors(ckpt / "optimizer.safetensors"))
        else:
            self.console.print("The checkpoint holds no optimizer moments (a sharded run): "
                               "AdamW starts afresh from its weights.")
        return run_folder.read_checkpoint_step(ckpt)

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train from the start, or on from the checkpoint when built with ``resume``."""
        cfg, plan = self.cfg, self.plan
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            # what a resumed run will use
            copy_encoder(self.assembled.encoder_choice.folder, self.run_dir)
            if self.model.signals is not None:
                self.model.signals.save(self.run_dir)
        start = self.load_checkpoint_state()
        kept = run_folder.read_log(self.run_dir, torn_tail=True) if self.checkpoint else []
        log = [e for e in kept if e["step"] < start]  # steps after the checkpoint run again
        self.accelerator.wait_for_everyone()  # all have read before rank 0 rewrites
        if self.is_main:
            run_folder.write_log(self.run_dir, log)
        log_path = run_folder.log_path(self.run_dir)
        if start >= plan.total_steps:
            return self._finish(log)
        total_micro = cfg.epochs * plan.micro_per_epoch
        progress = Progress("training", plan.total_steps, "steps", show=self.show_progress,
                            console=self.console, completed=start)
        self.model.train()
        step = start
        try:
            log_file = open(log_path, "a", encoding="utf-8") if self.is_main else nullcontext()
            with progress, log_file:
                for step in range(start, plan.total_steps):
                    entry = self._step(step, total_micro)
                    log.append(entry)
                    if self.is_main:
                        with writing(log_path):
                            log_file.write(json.dumps(entry) + "\n")
                            log_file.flush()
                    progress.advance(1, f"loss {entry['loss']:.3f}, lr {entry['lr']:.1e}, "
                                        f"p_hybrid {entry['p_hybrid']:.2f}, "
                                        f"{entry['samples_per_s']:.2f} samples/s")
                    if (step + 1) % cfg.checkpoint_every == 0:
                        self.save_checkpoint(step + 1)
        except KeyboardInterrupt:
            done = step  # the interrupted step did not finish
            self.save_checkpoint(done)
            raise LlaraKitError(
                f"Interrupted at step {done} of {plan.total_steps}; checkpoint saved. Continue "
                f"with: llara-kit train --out {self.run_dir} --resume"
            ) from None
        return self._finish(log)

    def _step(self, step: int, total_micro: int) -> dict[str, Any]:
        cfg = self.cfg
        lr = learning_rate(cfg, step, self.plan.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        p = self.assembled.schedule(step / self.plan.total_steps)
        p_short = self.lists.shortlist_share(step / self.plan.total_steps)
        first = step * cfg.grad_accum
        micro = range(first, min(first + cfg.grad_accum, total_micro))
        started = time.perf_counter()
        # loss x share, tokens, samples, hybrid samples, shortlists
        stats = torch.zeros(5, dtype=torch.float64)
        # accelerate syncs gradients (and DeepSpeed steps) when its count reaches grad_accum:
        # started so that it does on this step's last micro-batch, also in a short last step
        self.accelerator.step = cfg.grad_accum - len(micro)
        for g in micro:
            # dropout: reproducible on resume, rank 0 as in a one-process run
            torch.manual_seed(cfg.seed * 1_000_003 + g + self.rank * (1 << 40))
            batch = self.micro_batch(g, p, p_short)
            n = len(self.global_micro_batch(g))
            mine, stand_in = my_share(n, self.rank, self.world)
            share = 0.0 if stand_in else len(mine) / n  # this rank's share of the samples
            with self.accelerator.accumulate(self.engine):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    loss = self.engine(batch)
                # the engine averages over ranks and accelerate divides by grad_accum:
                # weighted so that they give the mean over this step's samples
                self.accelerator.backward(
                    loss * (share * self.world * cfg.grad_accum / len(micro)))
            if not stand_in:
                shortlists = self.candidate_lists(g, p_short)[1][mine].sum()
                stats += torch.tensor([loss.item() * share, batch.n_tokens, len(batch.hybrid),
                                       int(batch.hybrid.sum()), shortlists], dtype=torch.float64)
        loss_sum, tokens, samples, hybrid, shortlists = (
            self.accelerator.reduce(stats.to(self.device), "sum").tolist())
        tokens, samples, hybrid = int(tokens), int(samples), int(hybrid)
        if cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        return {
            "step": step, "epoch": first // self.plan.micro_per_epoch,
            "loss": round(loss_sum / len(micro), 5), "lr": lr, "p_hybrid": round(p, 5),
            "hybrid_share": round(hybrid / samples, 5), "p_shortlist": round(p_short, 5),
            "shortlist_share": round(shortlists / samples, 5), "samples": samples,
            "tokens": tokens,
            "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "samples_per_s": round(samples / seconds, 3),
        }

    def _leakage(self) -> dict[str, Any]:
        """How sharp the encoder that scores the training lists is on them: its HR@1 on the
        planned samples' first random lists and, with shortlists, the share of all train
        samples whose target their shortlist holds. Compare with the test split's (``pretrain``,
        ``evaluate --candidates retrieved``): they match when nothing leaks."""
        idx = self.plan.samples
        hit_rate = self.lists.hit_rate(self.data, idx, self.random_lists(0, idx))
        out = {"train_lists_scorer_HR@1": round(hit_rate, 4)}
        if self.lists.mined is not None:
            out["train_shortlist_recall"] = round(self.lists.recall(), 4)  # every train sample
        return out

    def _finish(self, log: list[dict[str, Any]]) -> dict[str, Any]:
        seconds = sum(e["seconds"] for e in log)
        summary = {
            "steps": len(log), "samples_seen": sum(e["samples"] for e in log),
            "train_samples": len(self.plan.samples), "hybrid_share_first": _share(log[:5]),
            "hybrid_share_last": _share(log[-5:]), "final_loss": log[-1]["loss"] if log else None,
            "train_seconds": round(seconds, 1),
            "tokens_per_s": round(sum(e["tokens"] for e in log) / seconds, 1) if log else None,
            "device": str(self.device), "bf16": self.bf16, "threads": torch.get_num_threads(),
            "processes": self.world, **self._leakage(),
        }
        state = trainable_state(self.engine)
        if self.is_main:
            save_adapter(self.model.llm, self.run_dir / "adapter", state)
            save_trainable(self.model, self.run_dir, state)
            run_folder.write_summary(self.run_dir, summary)
            ckpt = run_folder.checkpoint_path(self.run_dir)
            for path in (ckpt, ckpt.with_name(ckpt.name + ".old")):
                shutil.rmtree(path, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return summary


def _share(entries: list[dict[str, Any]]) -> float | None:
    samples = sum(e["samples"] for e in entries)
    return round(sum(e["hybrid_share"] * e["samples"] for e in entries) / samples, 3) \
        if samples else None


def _optimizer_tensors(optimizer: torch.optim.Optimizer, params: list) -> dict[str, torch.Tensor]:
    """AdamW state as flat named tensors (safetensors holds no pickles)."""
    out = {}
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            out[f"{i}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    return out


def _load_optimizer(optimizer: torch.optim.Optimizer, params: list,
                    tensors: dict[str, torch.Tensor]) -> None:
    for name, value in tensors.items():
        i, key = name.split(".", 1)
        p = params[int(i)]
        optimizer.state[p][key] = value.to(p.device)


def check_components(cfg: TrainConfig) -> None:
    """Fail on a misspelt component, one that cannot be imported, or a bad option, before
    any slow work starts."""
    for kind in KINDS:
        get_component(kind, getattr(cfg, kind)).factory  # noqa: B018 - imports a lazy one
    build_schedule(cfg.schedule, cfg.schedule_options)  # its options, too
    if cfg.negatives == "mixed":
        build_schedule(cfg.negatives_schedule)


def check_resume(cfg: TrainConfig, run_dir: Path) -> None:
    if not run_folder.is_run(run_dir):
        raise LlaraKitError(f"Nothing to resume in {str(run_dir)!r}: it has no config.json.")
    saved = run_folder.read_config(run_dir).to_dict()
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE and saved[key] != value:
            raise LlaraKitError(
                f"--resume with {key}={value!r}, but the run was started with "
                f"{key}={saved.get(key)!r}; use the same settings or another --out."
            )


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False,
          console: Console | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Train a LLaRA model into ``run_dir``; returns the run summary."""
    run_dir = Path(run_dir)
    check_components(cfg)
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
    with run_folder.owned(run_dir, "training", "wait for it to end, or choose another --out"):
        if resume:
            check_resume(cfg, run_dir)
            if run_folder.read_summary(run_dir) is not None:
                raise LlaraKitError(
                    f"Run {str(run_dir)!r} has finished; evaluate it, or train into another "
                    "--out."
                )
        elif run_folder.is_run(run_dir):
            raise LlaraKitError(
                f"Run folder {str(run_dir)!r} already holds a run; pass --resume to continue "
                "it or choose another --out."
            )
        trainer = Trainer(cfg, run_dir, console, show_progress, resume=resume)
        if trainer.is_main and (not resume or not run_folder.has_data_manifest(run_dir)):
            # (on --resume: a kill may have come between the config and the data manifest)
            run_folder.write_config(run_dir, cfg, trainer.data.manifest)
        return trainer.run()
