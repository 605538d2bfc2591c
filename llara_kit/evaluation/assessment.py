"""The ``evaluate`` command's work as one library call: load a run, score it (or its
zero-shot view), and fuse it with its encoder where the rule allows (score mode on the whole
test split, one negative draw: valid is scored too, to choose the weight)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llara_kit.data.settings import valid_split_of
from llara_kit.evaluation.evaluate import Evaluation, evaluate
from llara_kit.evaluation.fusion import Fusion, evaluate_fusion
from llara_kit.run import Run, load_run, zero_shot_view
from llara_kit.run_folder import evaluating


@dataclass
class Assessment:
    run: Run  # as scored (the zero-shot view with ``zero_shot``)
    result: Evaluation
    fusion: Fusion | None  # None where the rule did not fuse


def fuses(mode: str, split: str, zero_shot: bool, limit: int | None, draws: int) -> bool:
    """Whether an evaluation is fused with its encoder: score mode on every sample of a test
    split (test, or a new-item one) of the first draw, not zero-shot."""
    return mode == "score" and split.startswith("test") and not zero_shot and limit is None \
        and draws == 1


def assess(path: Path, split: str = "test", mode: str = "score", *, zero_shot: bool = False,
           fuse: bool = True, permutations: int = 1, draws: int = 1,
           candidates: str = "stored", shortlist: int = 20, batch_size: int = 4,
           limit: int | None = None, device: str = "auto", show_progress: bool = True
           ) -> Assessment:
    """Score the run in ``path`` and record it (see ``evaluate``); with ``fuse`` and where
    ``fuses`` says so, also score valid and record the fusion chosen there."""
    with evaluating(path):
        run = load_run(path, device=device, draws=draws)
        method = mode if candidates == "stored" else f"{mode}-retrieved"
        if zero_shot:
            run, method = zero_shot_view(run), f"zero-shot-{method}"
        options = dict(batch_size=batch_size, limit=limit, method=method,
                       show_progress=show_progress, candidates=candidates,
                       shortlist=shortlist)
        result = evaluate(run, split, mode, permutations=permutations, **options)
        fusion = None
        if fuse and fuses(mode, split, zero_shot, limit, draws):
            valid = evaluate(run, valid_split_of(split), mode, **options)
            fusion = evaluate_fusion(run, valid, result)
    return Assessment(run, result, fusion)
