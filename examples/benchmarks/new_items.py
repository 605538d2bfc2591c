"""Benchmark: does the LLM stage rank new items (never trained on) better than every cheaper
baseline, without costing warm users anything?

    .venv/bin/python examples/benchmarks/new_items.py run [--out runs/new] [--points NAME...]
    .venv/bin/python examples/benchmarks/new_items.py report [--out runs/new] [--test NAME]

``run`` trains each point (MovieLens-100K ``loo``, ``--new-items 0.2``, SmolLM2-135M, the
default budget of 256 samples) and scores it on valid-new, valid-new-only (every new-item
valid user) and the first 300 warm valid users; a finished point is skipped. ``report``
prints, per split, every point next to the baselines ``compare`` gives (popularity, SASRec
alone, SASRec with text-imputed new items, the frozen LLM's text similarity, genre overlap)
with paired differences to the best baseline, and each point's base alone (its score head
off, no LLM forward: what the LLM's hidden states add). ``--test NAME`` scores that point
(chosen on valid) on test, test-new and test-new-only once and adds those tables.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import torch

from llara_kit.config import TrainConfig
from llara_kit.data import target_positions
from llara_kit.encoders.ranking import candidate_scores
from llara_kit.evaluation.compare import add_paired, comparison, table_json
from llara_kit.evaluation.evaluate import evaluate
from llara_kit.metrics import mean_with_interval, summarise, target_ranks
from llara_kit.model.new_items import candidate_signals
from llara_kit.render import markdown
from llara_kit.run import load_prepared, load_run
from llara_kit.run_folder import has_metrics, load_metrics, read_config
from llara_kit.storage import write_json
from llara_kit.training.train import train

BASE = {"protocol": "loo", "new_items": 0.2}
POINTS = {  # name -> settings over the defaults, in the order they run
    "full-s0": {"item_dropout": 0.2, "content_base": True, "item_text": "attributes"},
    "content-s0": {"item_dropout": 0.2, "content_base": True},
    # the parts built from scratch at 10x the rate (they barely move at 8e-4 in 32 steps),
    # half the candidates shown as new
    "fast-s0": {"item_dropout": 0.5, "content_base": True, "item_text": "attributes",
                "new_lr": 8e-3},
    "plain-s0": {},
    "dropout-s0": {"item_dropout": 0.2},
    "full-s1": {"item_dropout": 0.2, "content_base": True, "item_text": "attributes",
                "seed": 1},
}
WARM_USERS = 300  # warm valid users scored (the quality grid's convention)
BASELINES = ("sasrec, new items imputed from text", "frozen LLM text similarity",
             "attribute overlap (no LLM)", "sasrec alone", "popularity")


def run_point(name: str, out: Path) -> None:
    folder = out / name
    if (folder / "valid-done.json").is_file():
        return
    if not (folder / "summary.json").is_file():
        if folder.exists():  # an interrupted point starts again
            subprocess.run(["rm", "-rf", str(folder)], check=True)
        train(TrainConfig(**(BASE | POINTS[name])), folder, show_progress=False)
    run = load_run(folder)
    seconds = {}
    for split in ("valid-new", "valid-new-only", "valid"):
        if not has_metrics(folder) or split not in load_metrics(folder):
            started = time.perf_counter()
            evaluate(run, split, batch_size=8, show_progress=False,
                     limit=WARM_USERS if split == "valid" else None)
            seconds[split] = round(time.perf_counter() - started, 1)
    write_json(folder / "valid-done.json", {"eval_seconds": seconds,
                                            "threads": torch.get_num_threads()})
    print(f"{name}: scored on valid ({seconds})", flush=True)


def base_only(folder: Path, split: str, limit: int | None, bonus: float = 0.0
              ) -> dict[str, dict]:
    """The run's residual base alone (its score head off: alpha times the encoder's score
    plus the content base), plus ``bonus`` for cold candidates, on the split's stored
    candidates: no LLM forward."""
    run = load_run(folder)
    s, model = run.data.splits[split], run.model
    n = limit or len(s)
    cands, targets = s.candidates[:n], s.targets[:n]
    encoder = torch.from_numpy(candidate_scores(model.encoder, run.data, split, cands))
    cold, content = candidate_signals(model.signals, s.history[:n], s.lengths[:n], cands)
    with torch.no_grad():
        scores = model.objective.alpha * encoder + bonus * torch.from_numpy(cold)
        if model.content_weights is not None:
            scores += model.weighted_content(encoder, torch.from_numpy(cold),
                                             torch.from_numpy(content))
    ranks = target_ranks(scores.numpy(), target_positions(cands, targets))
    return summarise(ranks, ("HR@1", "NDCG@10"))


def table(runs: list[Path], split: str, limit: int | None) -> str:
    """compare's rows on ``split`` (the runs evaluated on the same users), with paired
    differences to the best baseline by HR@1."""
    data = load_prepared(read_config(runs[0]))
    rows = comparison(runs, data, split)
    n = limit or len(data.splits[split])
    for row in rows.values():  # baselines score every user, runs the first n: the first n
        if any(len(v) != n for v in row.values.values()):
            row.values = {k: v[:n] for k, v in row.values.items()}
            row.metrics = {k: mean_with_interval(v) for k, v in row.values.items()}
    best = max((b for b in BASELINES if b in rows), key=lambda b: rows[b].values["HR@1"].mean())
    return (f"(Δ: paired difference to {best})\n\n"
            + markdown(table_json(rows, add_paired(rows, best)),
                       ["HR@1", "NDCG@10", "ΔHR@1", "ΔNDCG@10"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=Path("runs/new"))
    parser.add_argument("--points", nargs="*", default=list(POINTS))
    parser.add_argument("--test", default=None, help="the point chosen on valid: score test")
    args = parser.parse_args()
    if args.command == "run":
        for name in args.points:
            run_point(name, args.out)
        return
    runs = [args.out / p for p in args.points if (args.out / p / "valid-done.json").is_file()]
    for split, limit in (("valid-new", None), ("valid-new-only", None), ("valid", WARM_USERS)):
        print(f"\n### {split}\n\n{table(runs, split, limit)}")
        for run in runs:
            m = base_only(run, split, limit)["HR@1"]
            print(f"{run.name}, its base alone (head off): HR@1 {m['value']:.3f} "
                  f"[{m['low']:.3f}, {m['high']:.3f}]")
        print(f"\n### the trade-off on {split}: the base alone with a bonus for new items\n")
        for run in runs[:1]:
            print(" | ".join(f"+{b:g}: {base_only(run, split, limit, b)['HR@1']['value']:.3f}"
                             for b in (0, 0.5, 1, 2, 3, 5)))
    if args.test:
        chosen = args.out / args.test
        run = load_run(chosen)
        for split in ("test-new", "test-new-only", "test"):
            if split not in load_metrics(chosen):  # scored once
                evaluate(run, split, batch_size=8, show_progress=False)
            print(f"\n### {split} (scored once)\n\n{table([chosen], split, None)}")


if __name__ == "__main__":
    main()
