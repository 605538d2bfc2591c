"""Benchmark: LLaRA training throughput, peak memory and model-FLOPs utilisation.

    python examples/benchmarks/train_throughput.py [--llm smollm2-135m | --shape NAME]
        [--tokenizer DIR] [--device auto] [--batch-size 8] [--steps 4]
        [--precision fp32,bf16] [--compile no,yes] [--reference] [--json OUT]

Times real training steps of the trainer (batch building included) on ML-100K samples: 20
candidates, half the samples hybrid. ``--shape`` builds a model of a known shape with random
weights in memory (speed does not depend on the weights; ``--tokenizer`` then names a folder
with SmolLM2's tokenizer, default the embedded model's). For each precision and compile
setting it prints medians over ``--steps`` steps after warm-up: non-padding tokens/s,
samples/s, the padding share, peak memory (CUDA: allocated; CPU: the process's peak RSS, a
high-water mark over the whole run) and model-FLOPs utilisation against the GPU's dense peak.

Model FLOPs per non-padding token = 2 x forward, forward = 2 N + 2 L T d (N: the decoder's
weights, L layers, d hidden size, T the batch's mean length; causal attention). The frozen
weights need no weight gradients, so there is no third pass as in full fine-tuning.

``--reference`` adds the steps done the way the LLaRA reference code does them (behavioural
embeddings written by a Python loop over tokens, the LM head over every position).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from llara_kit.config import TrainConfig
from llara_kit.distributed import process_device
from llara_kit.model.batching import IGNORE, Batch
from llara_kit.model.llara import LlaraModel
from llara_kit.model.llm import Backbone, backbone_from, resolve_llm
from llara_kit.storage import atomic_path
from llara_kit.training.train import Trainer

SHAPES = {  # Llama configurations of known models (random weights)
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                         tie_word_embeddings=True, rope_theta=100000.0),
    "llama-3.2-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
                         tie_word_embeddings=True, rope_theta=500000.0),
}
# Dense peak TFLOP/s of one GPU by (name fragment, precision); fp32 = no TF32 (PyTorch's default).
PEAK_TFLOPS = {("H100", "bf16"): 989.0, ("H200", "bf16"): 989.0, ("A100", "bf16"): 312.0,
               ("H100", "fp32"): 67.0, ("H200", "fp32"): 67.0, ("A100", "fp32"): 19.5}


def build_backbone(args: argparse.Namespace, device: torch.device) -> Backbone | None:
    """Random weights of ``--shape`` (None: the trainer loads ``--llm``)."""
    if args.shape is None:
        return None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_llm("smollm2-135m"))
    config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=8192,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with device:  # built where it runs: a 1B model initialises in seconds on a GPU
        model = LlamaForCausalLM(config)
    return backbone_from(model, tokenizer)


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


def model_flops_per_token(trainer: Trainer, mean_length: float) -> float:
    decoder = trainer.model.llm.get_decoder()
    n = sum(p.numel() for p in decoder.layers.parameters())
    cfg = decoder.config
    return 2 * (2 * n + 2 * cfg.num_hidden_layers * mean_length * cfg.hidden_size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(trainer: Trainer, steps: int, warm: int, reference: bool) -> dict:
    """Medians over ``steps`` optimizer steps after ``warm`` ones."""
    device, plan = trainer.device, trainer.plan
    total_micro = trainer.cfg.epochs * plan.micro_per_epoch
    if reference:  # the loop's forward, on the same batches, replaced by the reference code's
        trainer.engine = lambda batch: reference_style_loss(trainer.model, batch)
    trainer.model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = []
    for step in range(warm + steps):
        batch = trainer.micro_batch(step, trainer.assembled.schedule(0.5))  # padding share
        _sync(device)
        started = time.perf_counter()
        entry = trainer._step(step, total_micro)
        _sync(device)
        if step >= warm:
            seconds = time.perf_counter() - started
            rows.append((seconds, entry["tokens"], entry["samples"], batch.input_ids.numel()))
    tokens_per_s = statistics.median(t / s for s, t, _, _ in rows)
    mean_length = sum(t for _, t, _, _ in rows) / sum(n for _, _, n, _ in rows)
    flops = tokens_per_s * model_flops_per_token(trainer, mean_length)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "tokens_per_s": round(tokens_per_s, 1),
        "samples_per_s": round(statistics.median(n / s for s, _, n, _ in rows), 3),
        "padding_share": round(1 - sum(t for _, t, _, _ in rows) / sum(p for *_, p in rows), 3),
        "mean_length": round(mean_length, 1),
        "peak_memory_gib": round(peak / 2**30, 2),
        "model_tflops": round(flops / 1e12, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--shape", choices=sorted(SHAPES))
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--compile", default="no")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for precision in args.precision.split(","):
        for compiled in (c == "yes" for c in args.compile.split(",")):
            for reference in (False, True) if args.reference else (False,):
                warm = 3 if compiled else 1
                cfg = TrainConfig(batch_size=args.batch_size, grad_accum=1, llm=args.llm,
                                  device=args.device,
                                  precision=precision, compile=compiled, dataset=args.dataset,
                                  data_dir=args.data_dir,
                                  max_train_samples=args.batch_size * (warm + args.steps))
                with tempfile.TemporaryDirectory() as run_dir:
                    backbone = build_backbone(args, process_device(args.device))
                    trainer = Trainer(cfg, Path(run_dir), show_progress=False,
                                      backbone=backbone)
                    row = measure(trainer, args.steps, warm, reference)
                device = trainer.device
                name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else f"cpu, {torch.get_num_threads()} threads")
                peak = next((v for (gpu, p), v in PEAK_TFLOPS.items()
                             if gpu in name and p == precision), None)
                row = {"model": args.shape or args.llm, "device": name,
                       "batch_size": args.batch_size, "precision": precision,
                       "compile": compiled, "code": "reference-style" if reference else "llara-kit",
                       **row, "mfu": round(row["model_tflops"] / peak, 3) if peak else None}
                results.append(row)
                print(f"{row['model']} on {name}, batch {args.batch_size}, {precision}"
                      f"{', compiled' if compiled else ''}, {row['code']}: "
                      f"{row['tokens_per_s']:,.0f} tokens/s, {row['samples_per_s']} samples/s, "
                      f"padding {row['padding_share']:.0%}, peak {row['peak_memory_gib']} GiB, "
                      f"{row['model_tflops']} model TFLOP/s"
                      + (f", MFU {row['mfu']:.1%}" if row["mfu"] is not None else ""),
                      flush=True)
                del trainer, backbone
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
