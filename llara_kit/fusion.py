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
from llara_kit.metrics import CANDIDATE_METRICS, per_sample, retrieved_metrics, summarise
from llara_kit.ranking import candidate_scores
from llara_kit.run import LoadedRun
from llara_kit.run_folder import read_predictions, record_metrics
from llara_kit.shortlists import list_ranks

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


def choose_lambda(llm: np.ndarray, encoder: np.ndarray, candidates: np.ndarray,
                  targets: np.ndarray, key: tuple[str, ...] = ("HR@1", "NDCG@10"),
                  ties_to_encoder: bool = False) -> tuple[float, dict[str, float]]:
    """The lambda with the best ``key`` metrics (in order; on a tie the smaller lambda, or
    with ``ties_to_encoder`` the larger: the LLM must beat the encoder to be used) and every
    lambda's value of the first, on the samples given (the valid split)."""
    best, best_key, table = LAMBDAS[0], None, {}
    for lam in (LAMBDAS[::-1] if ties_to_encoder else LAMBDAS):
        ranks = list_ranks(fuse(llm, encoder, lam), candidates, targets)
        values = tuple(per_sample(ranks, m).mean() for m in key)
        table[_label(lam)] = round(float(values[0]), 5)
        if best_key is None or values > best_key:
            best, best_key = lam, values
    return best, {_label(lam): table[_label(lam)] for lam in LAMBDAS}


def _label(lam: float) -> str:
    return "inf" if math.isinf(lam) else f"{lam:g}"


def stored_scores(run: LoadedRun, split: str, method: str = "score", every: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LLM's scores stored by ``evaluate`` for ``method``, with the candidates they score
    and the targets: (n, C), (n, C), (n,) for the first n samples of ``split`` (``every``:
    all of them)."""
    rows = read_predictions(run.path, split, method)
    if not rows or "scores" not in rows[0] or (every and len(rows) != len(run.data.splits[split])):
        raise LlaraKitError(
            f"Fusion needs the {method} scores of {'every' if every else 'some'} {split} "
            f"sample; run `llara-kit evaluate {run.path} --split {split}` first"
            f"{' without --limit' if every else ''}."
        )
    return (np.array([r["scores"] for r in rows], dtype=np.float64),
            np.array([r["candidates"] for r in rows]), np.array([r["target"] for r in rows]))


def fused_method(method: str) -> str:
    """Where the fusion of ``method`` is recorded: ``fused``, or ``fused-retrieved``."""
    return method.replace("score", "fused", 1)


def evaluate_fusion(run: LoadedRun, method: str = "score", record: bool = True
                    ) -> dict[str, Any]:
    """Choose lambda on the valid samples scored (all, or the first n of a --limit run),
    score the fused ranking of every test sample's candidates (those ``method`` ranked: the
    stored ones, or the encoder's shortlists, where lambda is chosen on NDCG@10 first and
    the encoder alone wins ties: ``recommend`` uses this choice); recorded as
    ``fused_method(method)``."""
    encoder = copy.deepcopy(run.model.encoder).cpu()  # the run's model may sit on a GPU
    retrieved = method.endswith("retrieved")
    key = ("NDCG@10", "HR@1") if retrieved else ("HR@1", "NDCG@10")
    llm_valid, cands_valid, targets_valid = stored_scores(run, "valid", method, every=False)
    lam, table = choose_lambda(
        llm_valid, candidate_scores(encoder, run.data, "valid", cands_valid), cands_valid,
        targets_valid, key, ties_to_encoder=retrieved)
    llm, cands, targets = stored_scores(run, "test", method)
    fused = fuse(llm, candidate_scores(encoder, run.data, "test", cands), lam)
    ranks = list_ranks(fused, cands, targets)
    metrics = summarise(ranks, retrieved_metrics(cands.shape[1]) if retrieved
                        else CANDIDATE_METRICS)
    info = {"mode": "score", "of": method, "lambda": _label(lam),
            f"valid_{key[0]}": table, "valid_samples": len(llm_valid), "samples": len(llm)}
    if record:
        rows = [{"ranking": cands[i][np.argsort(-fused[i], kind="stable")].tolist(),
                 "hit": bool(ranks[i] == 0), "target": int(targets[i]),
                 "candidates": cands[i].tolist()}
                for i in range(len(llm))]
        main_writes(lambda: record_metrics(run.path, "test", fused_method(method), metrics,
                                           info, rows))
    return {"lambda": _label(lam), f"valid_{key[0]}": table, "metrics": metrics,
            "key": key[0]}
