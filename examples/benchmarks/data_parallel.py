"""Benchmark: training samples/s of one process against several (CPU, gloo), same settings.

    python examples/benchmarks/data_parallel.py [--samples 64] [--processes 2] [--threads 2]
        [-- TRAIN OPTIONS]

Trains the default model (real SmolLM2-135M, ML-100K) on --samples train samples twice: one
process with --threads threads, then --processes processes under torchrun with
threads / processes threads each, so both use the same cores. Prints samples/s over the
training steps (loading excluded; from each run's summary.json) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from llara_kit.distributed import command


def train(processes: int, threads: int, out: Path, options: list[str]) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    argv = command(processes, log_dir=out.parent / "torchrun")
    subprocess.run([*argv, "train", "--out", str(out), *options], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    return {"processes": processes, "threads_each": threads,
            "samples_per_s": round(summary["samples_seen"] / summary["train_seconds"], 3),
            "train_seconds": summary["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("options", nargs="*", help="more `llara-kit train` options")
    args = parser.parse_args()
    options = ["--max-train-samples", str(args.samples), *args.options]
    with tempfile.TemporaryDirectory() as root:
        one = train(1, args.threads, Path(root) / "one", options)
        many = train(args.processes, max(1, args.threads // args.processes),
                     Path(root) / "many", options)
    for row in (one, many):
        print(f"{row['processes']} process(es) x {row['threads_each']} thread(s): "
              f"{row['samples_per_s']} samples/s over {row['train_seconds']} s of training")
    print(f"{args.processes} processes / 1 process, samples/s: "
          f"{many['samples_per_s'] / one['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
