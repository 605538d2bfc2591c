"""Benchmark report: two setups of the quality grid against each other on valid, seed by seed
and pooled over seeds, with paired differences (the rule for a new default: it must beat the
old one on valid over seeds).

    .venv/bin/python examples/benchmarks/seed_pairs.py [--out runs/quality]
        [--old head-user-cond-256-score] [--new head-user-cond-256-residual]

Reads the points `quality.py run` wrote (seed 0 is the point itself, seed s its ``-seed<s>``
twin) and compares, on the same valid users: HR@1 among the 20 stored random candidates, and
NDCG@10 over the whole catalogue (the LLM re-ranking its encoder's top 20 unseen items; a
target outside them is a miss), with the encoder alone over the whole catalogue as a third
row (each seed pre-trains its own encoder, which both setups share).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from llara_kit.metrics import mean_with_interval, paired_difference, per_sample
from llara_kit.storage import read_jsonl

SEEDS = (0, 1, 2)


def ranks(rows: list[dict]) -> np.ndarray:
    """The target's 0-based rank in each recorded ranking (inf when it is not in it)."""
    return np.array([r["ranking"].index(r["target"]) if r["target"] in r["ranking"]
                     else np.inf for r in rows])


def per_user(folder: Path) -> dict[str, np.ndarray]:
    stored = read_jsonl(folder / "predictions-valid-score.jsonl")
    retrieved = read_jsonl(folder / "predictions-valid-score-retrieved.jsonl")
    return {"HR@1 (20 random)": per_sample(ranks(stored), "HR@1"),
            "NDCG@10 (catalogue)": per_sample(ranks(retrieved), "NDCG@10"),
            "encoder NDCG@10 (catalogue)": per_sample(
                np.array([r["encoder_rank"] for r in retrieved]), "NDCG@10")}


def show(label: str, old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> None:
    n = len(old["HR@1 (20 random)"])
    print(f"| {label} | {n} | " + " | ".join(
        f"{old[k].mean():.3f} / {new[k].mean():.3f} / {_diff(new[k], old[k], k.startswith('HR'))}"
        for k in ("HR@1 (20 random)", "NDCG@10 (catalogue)"))
        + f" | {mean_with_interval(old['encoder NDCG@10 (catalogue)'])['value']:.3f} |")


def _diff(a: np.ndarray, b: np.ndarray, binary: bool) -> str:
    d = paired_difference(a, b, binary)
    return f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--old", default="head-user-cond-256-score")
    parser.add_argument("--new", default="head-user-cond-256-residual")
    args = parser.parse_args()
    pairs = {}
    for seed in SEEDS:
        suffix = f"-seed{seed}" if seed else ""
        folders = [args.out / f"{name}{suffix}" for name in (args.old, args.new)]
        if all((f / "predictions-valid-score-retrieved.jsonl").is_file() for f in folders):
            pairs[seed] = [per_user(f) for f in folders]
    if not pairs:
        raise SystemExit(f"No seed has both {args.old} and {args.new} scored in {args.out}.")
    print(f"old: {args.old}; new: {args.new}; valid users (first of each split)\n")
    print("| seed | users | HR@1, 20 random: old / new / new - old [95%] | NDCG@10, whole "
          "catalogue: old / new / new - old [95%] | encoder alone NDCG@10 |")
    print("|---|---|---|---|---|")
    for seed, (old, new) in pairs.items():
        show(str(seed), old, new)
    if len(pairs) > 1:
        pooled = [{k: np.concatenate([p[i][k] for p in pairs.values()]) for k in old}
                  for i in (0, 1)]
        show(f"pooled ({', '.join(map(str, pairs))})", *pooled)


if __name__ == "__main__":
    main()
