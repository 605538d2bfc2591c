"""Cost at the scale users bring: a synthetic CSV export (Pareto-like item popularity, a fixed
number of interactions per user, short titles), then the time and peak memory of preparing it
(`llara-kit data prepare`), of ranking every item for some test users (the whole-catalogue
evaluation's scoring, a SASRec of the default size with random weights), of pre-training
steps with the exact and a sampled softmax (with `pretrain_memory`'s estimate), and of the LLM
stage (`train` on a few samples with that SASRec, then scoring test samples), each in a fresh
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

from llara_kit.storage import write_json

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

# One step count of pre-training, run in its own process: sys.argv[2] steps of batch 256 with
# the exact softmax (sampled_softmax 0) or a sampled one; the estimate beside the measured peak.
PRETRAIN = """
import resource, sys, time, numpy as np, torch
from llara_kit.config import PretrainSettings
from llara_kit.data import prepare_data
from llara_kit.encoders.pretrain import _train_epoch, build_encoder, pretrain_memory
data, reused = prepare_data("csv", {"data_dir": sys.argv[1]})
assert reused, "prepare first"
steps, sampled = int(sys.argv[2]), int(sys.argv[3])
settings = PretrainSettings(sampled_softmax=sampled)
torch.manual_seed(0)
encoder = build_encoder("sasrec", data, {})
optimizer = torch.optim.Adam(encoder.parameters(), lr=settings.lr)
rows = np.arange(min(steps * settings.batch_size, len(data.splits["train"])))
generator = torch.Generator().manual_seed(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB: data, weights
_train_epoch(encoder, optimizer, data, settings, generator, rows[:2 * settings.batch_size])
started = time.perf_counter()  # after two warm-up steps
_train_epoch(encoder, optimizer, data, settings, generator, rows)
seconds = time.perf_counter() - started
print(len(rows) // settings.batch_size, seconds, before,
      pretrain_memory(encoder, settings) / 2**20)
"""

# The LLM stage on the same data: a random-weight SASRec stored for `train --encoder-dir` (the
# cost does not depend on its weights), then a run's test samples scored in another process.
ENCODER = """
import sys, torch
from llara_kit.data import prepare_data
from llara_kit.encoders.pretrain import build_encoder
data, _ = prepare_data("csv", {"data_dir": sys.argv[1]})
torch.manual_seed(0)
build_encoder("sasrec", data, {}).save(sys.argv[2])
"""
SCORE = """
import sys, time
from llara_kit.evaluation.evaluate import evaluate
from llara_kit.run import load_run
started = time.perf_counter()
run = load_run(sys.argv[1])
loaded = time.perf_counter()
evaluate(run, "test", batch_size=4, limit=int(sys.argv[2]), record=False, show_progress=False)
print(loaded - started, time.perf_counter() - loaded)
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


def _significant(seconds: float) -> float:
    """Three significant figures: a per-sample time on the tiny model is well under 0.01 s."""
    return float(f"{seconds:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--per-user", type=int, default=25)
    parser.add_argument("--users-ranked", type=int, default=10_000)
    parser.add_argument("--pretrain-steps", type=int, default=20,
                        help="Pre-training steps (batches of 256) timed per softmax.")
    parser.add_argument("--sampled-softmax", type=int, default=1000)
    parser.add_argument("--llm", default="smollm2-135m", help="The LLM stage's model.")
    parser.add_argument("--llm-samples", type=int, default=16,
                        help="Samples the LLM stage trains on and scores.")
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
        encoder, run = folder / "encoder", folder / "run"
        measured([sys.executable, "-c", ENCODER, str(folder), str(encoder)], env)
        train = measured([sys.executable, "-m", "llara_kit", "train", "--dataset", "csv",
                          "--data-dir", str(folder), "--encoder-dir", str(encoder),
                          "--max-train-samples", str(args.llm_samples), "--llm", args.llm,
                          "--out", str(run)], env)
        trained = json.loads((run / "summary.json").read_text())
        score = measured([sys.executable, "-c", SCORE, str(run), str(args.llm_samples)], env)
        load_seconds, score_seconds = map(float, score[2].split())
        pretrain = {name: measured([sys.executable, "-c", PRETRAIN, str(folder),
                                    str(args.pretrain_steps), str(k)], env)
                    for name, k in (("exact", 0), ("sampled", args.sampled_softmax))}
    figures = {"interactions": args.interactions, "users": args.interactions // args.per_user,
               "items": args.items, "export_seconds": round(written, 1),
               "prepare_seconds": round(prepare[0], 1), "prepare_peak_gib": round(prepare[1], 2),
               "ranked_users": int(users), "rank_seconds": round(float(rank_seconds), 1),
               "rank_process_peak_gib": round(rank[1], 2), "sampled_softmax": args.sampled_softmax}
    figures["llm"] = {
        "samples": args.llm_samples, "train_command_seconds": round(train[0], 1),
        "train_seconds_per_sample": _significant(
            trained["train_seconds"] / trained["samples_seen"]),
        "train_peak_gib": round(train[1], 2), "run_load_seconds": round(load_seconds, 1),
        "score_seconds_per_sample": _significant(score_seconds / args.llm_samples),
        "score_peak_gib": round(score[1], 2)}
    for name, (_, peak, out) in pretrain.items():
        steps, seconds, before, estimate = out.split()
        figures[f"pretrain_{name}"] = {
            "steps": int(steps), "seconds_per_step": _significant(float(seconds) / int(steps)),
            "process_peak_gib": round(peak, 2), "peak_before_training_gib": round(float(before), 2),
            "estimate_mib": round(float(estimate), 1)}
    f = figures
    print("| interactions | users | items | prepare s | prepare peak GiB | users ranked over "
          "all items | ranking s | ranking process peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {f['interactions']:,} | {f['users']:,} | {f['items']:,} | {f['prepare_seconds']} "
          f"| {f['prepare_peak_gib']} | {f['ranked_users']:,} | {f['rank_seconds']} | "
          f"{f['rank_process_peak_gib']} |")
    print("\n| pre-training softmax | s/step (batch 256) | process peak GiB | peak before "
          "training GiB | estimate GiB (`pretrain_memory`) |")
    print("|---|---|---|---|---|")
    for name in ("exact", "sampled"):
        p = f[f"pretrain_{name}"]
        label = "exact" if name == "exact" else f"sampled, {args.sampled_softmax:,} items"
        print(f"| {label} | {p['seconds_per_step']} | {p['process_peak_gib']} | "
              f"{p['peak_before_training_gib']} | {p['estimate_mib'] / 1024:.2f} |")
    m = f["llm"]
    print(f"\n| LLM stage ({m['samples']} samples) | train command s | train s/sample | train "
          "peak GiB | run load s | test scoring s/sample | scoring peak GiB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.llm}, defaults | {m['train_command_seconds']} | "
          f"{m['train_seconds_per_sample']} | {m['train_peak_gib']} | {m['run_load_seconds']} | "
          f"{m['score_seconds_per_sample']} | {m['score_peak_gib']} |")
    if args.json:
        write_json(args.json, figures)


if __name__ == "__main__":
    main()
