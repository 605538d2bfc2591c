"""Encoder fusion: rank candidates by z(LLM score) + lambda * z(encoder score), each score
standardised within the sample, lambda chosen on the valid split from a small grid.

lambda = 0 is the LLM alone and lambda = inf the encoder alone, so the fused row can only
beat both on valid; on test it shows whether the LLM adds what the encoder lacks.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from llara_kit.distributed import main_writes
from llara_kit.errors import LlaraKitError
from llara_kit.metrics import CANDIDATE_METRICS, per_sample, summarise, target_ranks
from llara_kit.ranking import all_item_scores
from llara_kit.run import LoadedRun
from llara_kit.run_folder import read_predictions, record_metrics

LAMBDAS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, math.inf)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Scores as z-values within each row: (n, C) -> (n, C); a constant row becomes 0."""
    spread = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)


def fuse(llm: np.ndarray, encoder: np.ndarray, lam: float) -> np.ndarray:
    """(n, C) fused scores; ``lam`` = inf ranks by the encoder alone."""
    if math.isinf(lam):
        return standardise(encoder)
    return standardise(llm) + lam * standardise(encoder)


def choose_lambda(llm: np.ndarray, encoder: np.ndarray, target_pos: np.ndarray
                  ) -> tuple[float, dict[str, float]]:
    """The lambda with the best HR@1 (then NDCG@10, then the smaller lambda) and every
    lambda's HR@1, on the samples given (the valid split)."""
    best, best_key, table = LAMBDAS[0], None, {}
    for lam in LAMBDAS:
        ranks = target_ranks(fuse(llm, encoder, lam), target_pos)
        key = (per_sample(ranks, "HR@1").mean(), per_sample(ranks, "NDCG@10").mean())
        table[_label(lam)] = round(float(key[0]), 5)
        if best_key is None or key > best_key:
            best, best_key = lam, key
    return best, table


def _label(lam: float) -> str:
    return "inf" if math.isinf(lam) else f"{lam:g}"


def encoder_candidate_scores(run: LoadedRun, split: str) -> np.ndarray:
    """The run's encoder's scores of the stored candidates: (n, C)."""
    encoder = copy.deepcopy(run.model.encoder).cpu()  # the run's model may sit on a GPU
    scores = all_item_scores(encoder, run.data, split)
    return np.take_along_axis(scores, run.data.splits[split].candidates, axis=1)


def stored_scores(run: LoadedRun, split: str, method: str = "score", every: bool = True
                  ) -> np.ndarray:
    """The LLM's candidate scores stored by ``evaluate``: (n, C) for the first n samples of
    ``split`` (``every``: all of them)."""
    rows = read_predictions(run.path, split, method)
    if not rows or "scores" not in rows[0] or (every and len(rows) != len(run.data.splits[split])):
        raise LlaraKitError(
            f"Fusion needs the {method} scores of {'every' if every else 'some'} {split} "
            f"sample; run `llara-kit evaluate {run.path} --split {split}` first"
            f"{' without --limit' if every else ''}."
        )
    return np.array([r["scores"] for r in rows], dtype=np.float64)


def evaluate_fusion(run: LoadedRun, method: str = "score", record: bool = True
                    ) -> dict[str, Any]:
    """Choose lambda on the valid samples scored (all, or the first n of a --limit run),
    score the fused ranking on every test sample; recorded as ``fused``."""
    valid, test = run.data.splits["valid"], run.data.splits["test"]
    llm_valid = stored_scores(run, "valid", method, every=False)
    n = len(llm_valid)
    lam, table = choose_lambda(
        llm_valid, encoder_candidate_scores(run, "valid")[:n],
        valid.target_positions()[:n])
    fused = fuse(stored_scores(run, "test", method), encoder_candidate_scores(run, "test"), lam)
    ranks = target_ranks(fused, test.target_positions())
    metrics = summarise(ranks, CANDIDATE_METRICS)
    if record:
        info = {"mode": "score", "of": method, "lambda": _label(lam), "valid_HR@1": table,
                "valid_samples": n, "samples": len(test)}
        rows = [{"ranking": test.candidates[i][np.argsort(-fused[i], kind="stable")].tolist(),
                 "hit": bool(ranks[i] == 0), "target": int(test.targets[i])}
                for i in range(len(test))]
        main_writes(lambda: record_metrics(run.path, "test", "fused", metrics, info, rows))
    return {"lambda": _label(lam), "valid_HR@1": table, "metrics": metrics}
