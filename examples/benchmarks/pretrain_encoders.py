"""Benchmark: pre-train every built-in encoder on ML-100K, print time and test metrics.

    .venv/bin/python examples/benchmarks/pretrain_encoders.py [--repeats 1]

Trains from scratch into a temporary cache (nothing reused), reports wall time per encoder
(median over repeats), epochs run, and HR@1 over the 20 stored test candidates with its 95%
bootstrap interval, next to the popularity baseline on the same candidates.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from llara_kit.data import prepare_data
from llara_kit.metrics import format_interval as fmt
from llara_kit.pretrain import pretrain_encoder
from llara_kit.ranking import popularity_scorer, score_item_scorer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--encoders", default="sasrec,gru4rec,caser")
    args = parser.parse_args()
    data, _ = prepare_data("ml-100k")
    print(f"torch threads: {torch.get_num_threads()}; data hash {data.hash[:16]}")
    pop = score_item_scorer(popularity_scorer(data), data, "test")
    print(f"{'popularity':10s} HR@1 {fmt(pop['HR@1'])}  NDCG@10 {fmt(pop['NDCG@10'])}  "
          f"full HR@10 {fmt(pop['full HR@10'])}")
    for name in args.encoders.split(","):
        seconds = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as home:
                result = pretrain_encoder(name, data, home=Path(home), show_progress=False)
            seconds.append(result.report["seconds"])
        t = result.report["test"]
        print(f"{name:10s} HR@1 {fmt(t['HR@1'])}  NDCG@10 {fmt(t['NDCG@10'])}  "
              f"full HR@10 {fmt(t['full HR@10'])}  epochs {result.report['epochs_run']}  "
              f"train seconds (median of {args.repeats}) {statistics.median(seconds):.1f}")


if __name__ == "__main__":
    main()
