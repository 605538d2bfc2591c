"""Benchmark: LLaRA training throughput with SmolLM2-135M on this machine.

    .venv/bin/python examples/benchmarks/train_throughput.py [--steps 4] [--batch-size 8]
        [--llm smollm2-135m] [--dataset ml-100k] [--data-dir DIR]

Times optimizer steps (batch 8, 20 candidates, half the samples hybrid) in fp32 and bf16
autocast, and the same steps done the way the LLaRA reference code does them: behavioural
embeddings written by a Python loop over samples and tokens, and the LM head run over every
position with the full vocabulary. Prints medians over --steps steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from llara_kit.batching import IGNORE, Batch
from llara_kit.config import TrainConfig
from llara_kit.model import LlaraModel
from llara_kit.train import Trainer


def reference_style_loss(model: LlaraModel, batch: Batch) -> torch.Tensor:
    """The reference code's costs: a per-token Python loop, full-vocabulary logits."""
    embeds = model.llm.get_input_embeddings()(batch.input_ids).clone()
    k = 0
    for b in range(batch.input_ids.shape[0]):
        for t in range(batch.input_ids.shape[1]):
            if batch.input_ids[b, t] == model.behaviour_id:
                vec = model.encoder.item_embeddings(batch.item_ids[k : k + 1])
                embeds[b, t] = model.projector(vec)[0].to(embeds.dtype)
                k += 1
    logits = model.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch.labels[:, 1:].flatten(),
                           ignore_index=IGNORE)


def time_steps(trainer: Trainer, steps: int, loss_fn, bf16: bool) -> list[tuple[float, int, int]]:
    """(seconds, tokens, samples) per optimizer step, after one warm-up step."""
    out, device = [], trainer.device
    for g in range(steps + 1):
        batch = trainer.micro_batch(g, 0.5).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(trainer.model, batch)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if g:
            out.append((time.perf_counter() - started, batch.n_tokens, len(batch.hybrid)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    cfg = TrainConfig(batch_size=args.batch_size, max_train_samples=args.batch_size * 64,
                      llm=args.llm, dataset=args.dataset, data_dir=args.data_dir)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir), show_progress=False)
    trainer.model.train()
    print(f"device {trainer.device}; torch threads: {torch.get_num_threads()}; {args.llm}; "
          f"batch {args.batch_size}; "
          f"{cfg.candidates} candidates; medians over {args.steps} steps")
    rows = {}
    for name, fn in (("llara-kit", lambda m, b: m(b)), ("reference-style", reference_style_loss)):
        for precision in ("fp32", "bf16"):
            timed = time_steps(trainer, args.steps, fn, precision == "bf16")
            tok = statistics.median(t / s for s, t, _ in timed)
            smp = statistics.median(n / s for s, _, n in timed)
            rows[name, precision] = tok
            print(f"{name:16s} {precision}: {tok:7.1f} tokens/s  {smp:5.2f} samples/s")
    for precision in ("fp32", "bf16"):
        ratio = rows["llara-kit", precision] / rows["reference-style", precision]
        print(f"speed-up over reference-style, {precision}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
