"""Benchmark: the peak memory of one training step against the prompt length, next to the
estimate `llara-kit train` checks before its first step (llara_kit.model.lengths.step_memory).

    .venv/bin/python examples/benchmarks/prompt_memory.py [--words 5 20 40] [--batch-size 2]
        [--gradient-checkpointing]

For each title length (words of filler per title) it writes a small CSV data set (60 users,
200 items, 25 interactions each), trains one step of the embedded SmolLM2 in a fresh process
(fp32, one micro-batch of --batch-size, titles whole) under a private cache, and prints the
longest prompt in tokens, the process's peak resident memory (``ru_maxrss``: weights,
runtime and the step) and the estimate (the step alone). Nothing else should run meanwhile:
the peak of a shared machine's allocator varies.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

FILLER = ("river", "night", "garden", "stone", "silver", "morning", "window", "paper", "winter",
          "violin")


def write_data(folder: Path, words: int) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True)
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["user", "item", "timestamp"])
        for user in range(60):
            out.writerows([user, item, t] for t, item in enumerate(rng.sample(range(200), 25)))
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["item", "title"])
        for i in range(200):
            out.writerow([i, f"Item {i} " + " ".join(rng.choice(FILLER) for _ in range(words))])
    return folder


def longest_and_estimate(data_dir: Path, batch: int, checkpointing: bool) -> tuple[int, float]:
    from llara_kit.config import TrainConfig
    from llara_kit.model.lengths import fit_prompts, step_memory
    from llara_kit.model.llm import load_backbone
    from llara_kit.plugins import build_component
    from llara_kit.run import load_prepared

    cfg = TrainConfig(dataset="csv", data_dir=str(data_dir), template="item", title_tokens=0)
    backbone = load_backbone(cfg.llm)
    template = build_component("template", cfg.template)
    longest = fit_prompts(cfg, load_prepared(cfg), backbone, template, ("train",))[1]
    c = backbone.model.config
    need = step_memory(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, batch,
                       longest.tokens, 4, checkpointing)
    return longest.tokens, need / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, nargs="+", default=[5, 20, 40])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="prompt-memory-"))
    os.environ["LLARA_KIT_HOME"] = str(root / "home")
    print(f"batch {args.batch_size}, fp32, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}, {os.cpu_count()} CPUs")
    print("| words per title | longest prompt (tokens) | peak resident memory | estimate |")
    print("|---|---|---|---|")
    for words in args.words:
        data_dir = write_data(root / f"d{words}", words)
        tokens, estimate = longest_and_estimate(data_dir, args.batch_size,
                                                args.gradient_checkpointing)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(
            [sys.executable, "-m", "llara_kit", "train", "--dataset", "csv", "--data-dir",
             str(data_dir), "--template", "item", "--title-tokens", "0", "--precision", "fp32",
             "--batch-size", str(args.batch_size), "--grad-accum", "1",
             "--max-train-samples", str(args.batch_size), "--out", str(root / f"run{words}"),
             *(["--gradient-checkpointing"] if args.gradient_checkpointing else [])],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child's
        shown = f"{peak * 1024 / 1e9:.1f} GB" if peak > before else "(below an earlier run's)"
        print(f"| {words} | {tokens:,} | {shown} | {estimate:.1f} GB |", flush=True)


if __name__ == "__main__":
    main()
