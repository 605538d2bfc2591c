"""Encoder fusion: rank candidates by z(LLM score) + lambda * z(encoder score), each score
standardised within the sample, lambda chosen on the valid split from a small grid.

lambda = 0 is the LLM alone and lambda = inf the encoder alone, so the fused row can only
beat both on valid; on test it shows whether the LLM adds what the encoder lacks.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from llara_kit.distributed import main_writes
from llara_kit.encoders.ranking import candidate_scores
from llara_kit.encoders.shortlists import list_ranks
from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.evaluate import Evaluation
from llara_kit.metrics import (
    CANDIDATE_METRICS,
    paired_difference,
    per_sample,
    retrieved_metrics,
    summarise,
)
from llara_kit.run import Run
from llara_kit.run_folder import record_metrics

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


def supported_lambda(llm: np.ndarray, encoder: np.ndarray, candidates: np.ndarray,
                     targets: np.ndarray, key: tuple[str, ...]
                     ) -> tuple[float, dict[str, float], dict[str, float] | None]:
    """``choose_lambda`` with ties to the encoder, and a lambda other than inf kept only when
    its gain in ``key[0]`` over the encoder alone on these samples has a paired 95% interval
    above 0 (else inf: a tie is the encoder's, which is cheaper): (lambda, table, the gain
    with its interval and p, or None when the encoder won outright)."""
    lam, table = choose_lambda(llm, encoder, candidates, targets, key, ties_to_encoder=True)
    if math.isinf(lam):
        return lam, table, None
    ours, theirs = (per_sample(list_ranks(fuse(llm, encoder, x), candidates, targets), key[0])
                    for x in (lam, math.inf))
    gain = paired_difference(ours, theirs, binary=bool(np.isin(ours, (0, 1)).all()))
    return (lam if gain["low"] > 0 else math.inf), table, gain | {"metric": key[0]}


def _label(lam: float) -> str:
    return "inf" if math.isinf(lam) else f"{lam:g}"


def _scored(result: Evaluation, run: Run, every: bool) -> Evaluation:
    """``result`` if it holds the LLM's scores (of every sample of its split, with
    ``every``); else one sentence saying what to run."""
    if result.scores is None or (every and len(result.scores)
                                 != len(run.data.splits[result.split])):
        raise LlaraKitError(
            f"Fusion needs the {result.method} scores of {'every' if every else 'some'} "
            f"{result.split} sample; run `llara-kit evaluate {run.path} --split {result.split}`"
            f"{' without --limit' if every else ''} first.")
    return result


def fused_method(method: str) -> str:
    """Where the fusion of ``method`` is recorded: ``fused``, or ``fused-retrieved``."""
    return method.replace("score", "fused", 1)


@dataclass
class Fusion:
    """The fused ranking of a test evaluation: the weight chosen on valid and its metrics."""

    of: str  # the method fused with the encoder
    lam: str  # the chosen weight: "0" (the LLM alone) ... "inf" (the encoder alone)
    key: str  # the valid metric it was chosen on
    valid: dict[str, float]  # that metric for every weight
    metrics: dict[str, dict[str, float]]


def evaluate_fusion(run: Run, valid: Evaluation, test: Evaluation, record: bool = True
                    ) -> Fusion:
    """Choose lambda on the valid samples scored (all, or the first n of a --limit run),
    score the fused ranking of every test sample's candidates (those ``test`` ranked: the
    stored ones, or the encoder's shortlists, where lambda is chosen on NDCG@10 first, the
    encoder alone wins ties and any other lambda must beat it on valid with a paired 95%
    interval above 0, else the encoder alone is chosen: ``recommend`` uses this choice);
    recorded as ``fused_method(test.method)``."""
    encoder = copy.deepcopy(run.model.encoder).cpu()  # the run's model may sit on a GPU
    method = test.method
    retrieved = method.endswith("retrieved")
    key = ("NDCG@10", "HR@1") if retrieved else ("HR@1", "NDCG@10")
    valid, test = _scored(valid, run, every=False), _scored(test, run, every=True)
    on_valid = (valid.scores, candidate_scores(encoder, run.data, valid.split, valid.candidates),
                valid.candidates, valid.targets, key)
    if retrieved:
        lam, table, gain = supported_lambda(*on_valid)
    else:
        (lam, table), gain = choose_lambda(*on_valid), None
    cands, targets = test.candidates, test.targets
    fused = fuse(test.scores, candidate_scores(encoder, run.data, test.split, cands), lam)
    ranks = list_ranks(fused, cands, targets)
    metrics = summarise(ranks, retrieved_metrics(cands.shape[1]) if retrieved
                        else CANDIDATE_METRICS)
    info = {"mode": "score", "of": method, "lambda": _label(lam),
            f"valid_{key[0]}": table, "valid_samples": len(valid.scores),
            "samples": len(test.scores)}
    if gain is not None:
        info["valid_gain"] = gain
    if record:
        rows = [{"ranking": cands[i][np.argsort(-fused[i], kind="stable")].tolist(),
                 "hit": bool(ranks[i] == 0), "target": int(targets[i]),
                 "candidates": cands[i].tolist()}
                for i in range(len(cands))]
        main_writes(lambda: record_metrics(run.path, test.split, fused_method(method), metrics,
                                           info, rows))
    return Fusion(method, _label(lam), key[0], table, metrics)
