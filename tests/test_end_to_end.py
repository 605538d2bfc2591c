"""The whole path on the real parts: the embedded SmolLM2-135M and MovieLens-100K (the
paper's `llara` split), through the commands a user runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from llara_kit.cli import cli
from llara_kit.run_folder import read_log, read_predictions


def invoke(*args: str) -> str:
    """The command's standard output (progress and library messages go to standard error)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.slow
def test_movielens_on_smollm2_pretrain_train_evaluate_recommend_report(tmp_path):
    run = tmp_path / "run"
    encoder = json.loads(invoke("pretrain", "--encoder", "sasrec", "--epochs", "3", "--json"))
    assert encoder["test"]["HR@1"]["value"] > 0.1  # 20 candidates: chance is 0.05
    # the same 8 samples three times, each with the same list every time (SASRec's shortlist,
    # the target injected; random negatives drawn anew each epoch would make the passes
    # incomparable), the parts trained from scratch at 10x the LoRA's rate: the third pass
    # must fit them better
    invoke("train", "--encoder", "sasrec", "--projector", "mlp", "--schedule", "linear",
           "--max-train-samples", "8", "--epochs", "3", "--batch-size", "2",
           "--grad-accum", "1", "--new-lr", "8e-3", "--negatives", "shortlist",
           "--missing-target", "inject", "--out", str(run))
    assert json.loads((run / "encoder" / "pretrain.json").read_text())["key"] == \
        encoder["key"]  # the encoder pre-trained above
    log = read_log(run)
    first, last = ([e["loss"] for e in log if e["epoch"] == k] for k in (0, 2))
    assert len(log) == 12 and np.mean(last) < np.mean(first) - 0.1, log
    assert all(e["shortlist_share"] == 1.0 for e in log)

    metrics = json.loads(invoke("evaluate", str(run), "--limit", "16", "--no-fuse",
                                "--json"))["score"]
    rows = read_predictions(run, "test", "score")
    assert len(rows) == 16
    scores = np.array([r["scores"] for r in rows])  # (16, 20)
    assert np.isfinite(scores).all() and (scores.max(1) > scores.min(1)).all()
    assert metrics["HR@1"]["value"] == np.mean([r["hit"] for r in rows])

    history = ["Star Wars", "The Empire Strikes Back", "Return of the Jedi", "Toy Story"]
    recs = json.loads(invoke("recommend", str(run), *(x for h in history
                                                      for x in ("--history", h)), "--json"))
    assert len(recs) == 10 and len({r["item"] for r in recs}) == 10
    assert not {r["title"] for r in recs} & set(history)  # unseen items only
    assert all(np.isfinite(r["score"]) for r in recs)

    invoke("report", str(run), "--out", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"{metrics['HR@1']['value']:.3f}" in page and run.name in page
