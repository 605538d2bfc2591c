"""Benchmark: evaluation speed of the three modes on a trained run.

    .venv/bin/python examples/benchmarks/eval_throughput.py RUN [--samples 16] [--batch-size 4]

Times `score`, `constrained` and `generate` on the first --samples test users, and the
reference code's generation-based test step as it works: right-padded batches, greedy
generation of up to 64 new tokens. Prints samples/s for each and the ratio to the reference.
"""

from __future__ import annotations

import argparse
import time

import torch

from llara_kit.evaluation.evaluate import evaluate, split_prompts
from llara_kit.model.batching import collate
from llara_kit.run import load_run


@torch.no_grad()
def reference_generation(run, prompts, batch_size: int) -> None:
    tok = run.model.tokenizer
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        batch = collate(run.model, chunk, [None] * len(chunk)).to(run.model.llm.device)
        embeds = run.model.input_embeddings(batch)
        run.model.llm.generate(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                               do_sample=False, max_new_tokens=64,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    run = load_run(args.run, device=args.device)
    print(f"{args.device}; torch threads: {torch.get_num_threads()}; {args.samples} test users; "
          f"batch {args.batch_size}; {run.data.settings.candidates} candidates; fp32")
    rates = {}
    for mode in ("score", "constrained", "generate"):
        started = time.perf_counter()
        evaluate(run, "test", mode, batch_size=args.batch_size, limit=args.samples,
                 record=False, show_progress=False)
        rates[mode] = args.samples / (time.perf_counter() - started)
    prompts = split_prompts(run, "test", run.hybrid, args.samples)[0]
    started = time.perf_counter()
    reference_generation(run, prompts, args.batch_size)
    rates["reference-style generation"] = args.samples / (time.perf_counter() - started)
    for name, rate in rates.items():
        ratio = rate / rates["reference-style generation"]
        print(f"{name:28s} {rate:6.3f} samples/s  ({ratio:.2f}x reference)")


if __name__ == "__main__":
    main()
