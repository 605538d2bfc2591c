"""Benchmark: how much sharper the encoder is on the samples the LLM trains on than at test.

    .venv/bin/python examples/benchmarks/leakage.py [--protocol loo] [--folds 3] [--seed 0]

For the run's encoder (pre-trained on every train sample) and for cross-fitted encoders
(``--cross-fit K``: each train sample scored by the encoder pre-trained without its fold), it
prints HR@1 on the 20 random candidates and Recall@20 of the whole-catalogue shortlist, on
the train samples (every one, and the first epoch's random lists), on valid and on test.
Without leakage the train columns match valid and test. Encoders come from the cache (or are
pre-trained now with the default settings, a few minutes each on 2 cores).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from llara_kit.config import TrainConfig
from llara_kit.encoders import load_encoder
from llara_kit.encoders.shortlists import shortlists
from llara_kit.run import choose_encoder, load_prepared
from llara_kit.training.lists import training_lists


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="loo", choices=["loo", "llara"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = TrainConfig(protocol=args.protocol, seed=args.seed)
    data = load_prepared(cfg)
    encoder = load_encoder(choose_encoder(cfg, data, "/nonexistent", False).folder)
    train = data.splits["train"]
    random_lists = data.train_candidates(0)  # (n_train, 20)
    size = data.settings.candidates
    print(f"ML-100K {args.protocol}: {len(train):,} train samples, "
          f"{len(data.splits['test'])} test users; HR@1 on 20 random candidates, Recall@{size} "
          "of the encoder's top unseen items (history masked)\n")
    at_eval = []  # at evaluation the run's own encoder scores, whatever trained the LLM
    for split in ("valid", "test"):
        s = data.splits[split]
        with torch.no_grad():
            full = encoder(torch.from_numpy(s.history), torch.from_numpy(s.lengths)).numpy()
        picked = np.take_along_axis(full, s.candidates, axis=1).argmax(1)  # (n,)
        hr = (s.candidates[np.arange(len(s)), picked] == s.targets).mean()
        at_eval += [f"{hr:.3f}", f"{shortlists(encoder, data, split, size).retrieved.mean():.3f}"]
    print(f"| scorer of the training lists | train HR@1 | train Recall@{size} | valid HR@1 "
          f"| valid Recall@{size} | test HR@1 | test Recall@{size} |")
    print("|---|---|---|---|---|---|---|")
    for label, folds in (("the run's encoder (trained on every train sample)", 0),
                         (f"cross-fitted, {args.folds} folds (out of fold)", args.folds)):
        lists = training_lists(TrainConfig(protocol=args.protocol, seed=args.seed,
                                           cross_fit=folds, negatives="shortlist"),
                               data, encoder, show_progress=False)
        train_hr = lists.hit_rate(data, np.arange(len(train)), random_lists)
        print(f"| {label} | {train_hr:.3f} | {lists.recall():.3f} | " + " | ".join(at_eval)
              + " |")

if __name__ == "__main__":
    main()
