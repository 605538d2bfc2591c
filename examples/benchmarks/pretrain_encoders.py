"""Benchmark: pre-train encoders on ML-100K, print time and test metrics, paired differences.

    .venv/bin/python examples/benchmarks/pretrain_encoders.py [--repeats 1]
        [--encoders sasrec,gru4rec,caser,bert4rec] [--protocol llara|loo] [--reuse]
        [--sampled-softmax 0,100,1000]

Trains from scratch into a temporary cache (nothing reused; with ``--reuse``, the encoders
`llara-kit pretrain` stored with the default settings are used or stored, and no time is
reported), reports wall time per encoder (median over repeats), epochs run, and HR@1 over the
20 stored test candidates with its 95% bootstrap interval, next to the popularity baseline on
the same candidates, and each encoder's paired HR@1 difference to the first one (95% paired
bootstrap interval, McNemar p); with several ``--sampled-softmax`` sizes each encoder is
pre-trained with each (0: the exact softmax). Third-party encoders (``bert4rec`` from
plugins/llara-kit-bert4rec) load through their entry points.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from llara_kit.config import PretrainSettings
from llara_kit.data import DataSettings, prepare_data
from llara_kit.encoders.pretrain import pretrain_encoder
from llara_kit.encoders.ranking import (
    candidate_ranks,
    popularity_scorer,
    score_item_scorer,
)
from llara_kit.metrics import paired_difference, per_sample
from llara_kit.render import format_interval as fmt
from llara_kit.storage import read_jsonl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--encoders", default="sasrec,gru4rec,caser")
    parser.add_argument("--protocol", choices=("llara", "loo"), default="llara")
    parser.add_argument("--reuse", action="store_true",
                        help="use (or store) the encoders in the llara-kit cache")
    parser.add_argument("--sampled-softmax", default="0",
                        help="comma-separated sizes of the sampled softmax (0: exact)")
    args = parser.parse_args()
    data, _ = prepare_data("ml-100k", settings=DataSettings(protocol=args.protocol))
    print(f"torch threads: {torch.get_num_threads()}; ML-100K {args.protocol}, "
          f"{len(data.splits['test'])} test users; data hash {data.hash[:16]}")
    pop = score_item_scorer(popularity_scorer(data), data, "test")
    print(f"{'popularity':10s} HR@1 {fmt(pop['HR@1'])}  NDCG@10 {fmt(pop['NDCG@10'])}  "
          f"full HR@10 {fmt(pop['full HR@10'])}")
    first = None
    runs = [(name, int(k)) for name in args.encoders.split(",")
            for k in args.sampled_softmax.split(",")]
    for name, k in runs:
        label = name if not k else f"{name}, sampled {k}"
        settings = PretrainSettings(seed=data.settings.seed, sampled_softmax=k)
        seconds = []
        for _ in range(1 if args.reuse else args.repeats):
            with tempfile.TemporaryDirectory() as home:
                result = pretrain_encoder(name, data, settings=settings, show_progress=False,
                                          home=None if args.reuse else Path(home))
                log = read_jsonl(result.path / "train_log.jsonl")
            seconds.append(result.report["seconds"])
        hits = per_sample(candidate_ranks(result.encoder, data, "test"), "HR@1")  # (n,) 0/1
        t = result.report["test"]
        timing = (f"stored run took {result.report['seconds']:.0f} s" if result.reused else
                  f"train seconds (median of {len(seconds)}) {statistics.median(seconds):.1f}")
        delta = ""
        if first is None:
            first = hits
        else:
            d = paired_difference(hits, first, binary=True)
            delta = (f"  ΔHR@1 vs the first {d['value']:+.3f} [{d['low']:+.3f}, "
                     f"{d['high']:+.3f}] p={d['p']:.2g}")
        best = max(e["valid_mrr"] for e in log)
        print(f"{label:18s} HR@1 {fmt(t['HR@1'])}  NDCG@10 {fmt(t['NDCG@10'])}  "
              f"full HR@10 {fmt(t['full HR@10'])}  epochs {result.report['epochs_run']}  "
              f"best valid MRR {best:.4f}  {timing}{delta}")

if __name__ == "__main__":
    main()
