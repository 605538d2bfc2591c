"""Cost at the scale users bring: a synthetic CSV export (Pareto-like item popularity, a fixed
number of interactions per user, short titles), then the time and peak memory of preparing it
(`llara-kit data prepare`) and of ranking every item for some test users (the whole-catalogue
evaluation's scoring, a SASRec of the default size with random weights), each in a fresh
process.

    python examples/benchmarks/scale.py --interactions 2000000 --items 100000
    python examples/benchmarks/scale.py --interactions 1000000 --items 50000 --users-ranked 10000

Figures: wall seconds and peak RSS (GiB) per step, printed as a Markdown row and written with
``--json``. State the CPU (`lscpu`) and run nothing else meanwhile when timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The ranking step, run in its own process: prepared data from the cache, a random SASRec.
RANK = """
import sys, time, torch
from llara_kit.data import prepare_data
from llara_kit.encoders.pretrain import build_encoder
from llara_kit.encoders.ranking import split_ranks
data, reused = prepare_data("csv", {"data_dir": sys.argv[1]})
assert reused, "prepare first"
torch.manual_seed(0)
encoder = build_encoder("sasrec", data, {}).eval()
users = min(int(sys.argv[2]), len(data.splits["test"]))
started = time.perf_counter()
split_ranks(encoder, data, "test", users)
print(users, time.perf_counter() - started)
"""


def write_export(folder: Path, interactions: int, items: int, per_user: int, seed: int) -> None:
    """interactions.csv (user, item, timestamp) and items.csv (item, title) in ``folder``."""
    rng = np.random.default_rng(seed)
    users = interactions // per_user
    weights = 1.0 / (np.arange(items) + 10.0) ** 0.9  # a long tail of rarely seen items
    with open(folder / "interactions.csv", "w", encoding="utf-8") as fh:
        fh.write("user,item,timestamp\n")
        for start in range(0, users, 20_000):
            block = np.arange(start, min(start + 20_000, users))
            picked = rng.choice(items, size=(len(block), per_user), p=weights / weights.sum())
            fh.write("".join(f"u{u},i{i},{t}\n" for u, row in zip(block, picked, strict=True)
                             for t, i in enumerate(row)))
    with open(folder / "items.csv", "w", encoding="utf-8") as fh:
        fh.write("item,title\n" + "".join(f"i{i},Item {i}\n" for i in range(items)))


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GiB, stdout) of ``argv`` in a fresh process."""
    probe = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], "
             "capture_output=True, text=True); sys.stderr.write(done.stderr); "
             "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "print(done.stdout)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                         env=env)
    seconds = time.perf_counter() - started
    code, kib = out.stdout.splitlines()[0].split()
    if code != "0":
        sys.exit(f"{argv[:4]} failed:\n{out.stderr[-3000:]}")
    return seconds, int(kib) / 2**20, out.stdout.split("\n", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--per-user", type=int, default=25)
    parser.add_argument("--users-ranked", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, env = Path(tmp), os.environ | {"LLARA_KIT_HOME": str(Path(tmp) / "home")}
        started = time.perf_counter()
        write_export(folder, args.interactions, args.items, args.per_user, args.seed)
        written = time.perf_counter() - started
        prepare = measured([sys.executable, "-m", "llara_kit", "data", "prepare", "--dataset",
                            "csv", "--data-dir", str(folder), "--json"], env)
        rank = measured([sys.executable, "-c", RANK, str(folder), str(args.users_ranked)], env)
        users, rank_seconds = rank[2].split()
    figures = {"interactions": args.interactions, "users": args.interactions // args.per_user,
               "items": args.items, "export_seconds": round(written, 1),
               "prepare_seconds": round(prepare[0], 1), "prepare_peak_gib": round(prepare[1], 2),
               "ranked_users": int(users), "rank_seconds": round(float(rank_seconds), 1),
               "rank_process_peak_gib": round(rank[1], 2)}
    print("| interactions | users | items | prepare s | prepare peak GiB | users ranked over "
          "all items | ranking s | ranking process peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    f = figures
    print(f"| {f['interactions']:,} | {f['users']:,} | {f['items']:,} | {f['prepare_seconds']} "
          f"| {f['prepare_peak_gib']} | {f['ranked_users']:,} | {f['rank_seconds']} | "
          f"{f['rank_process_peak_gib']} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
