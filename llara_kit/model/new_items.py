"""What a run knows of items beyond their encoder embedding: the frozen LLM's vector of each
item's text and the encoder embedding imputed from it, and the per-candidate signals built
from them (which candidates are shown as new, the content score).

A candidate is *cold* when it is a new item (held out by the data's ``new_items``) or, in
training, a warm one shown as new by item dropout. A cold candidate's behavioural token is
the projection of its imputed embedding plus a learned cold marker, and its encoder score is
the imputed embedding's; every candidate also has a content score, the cosine of its text
vector with the history's mean (``encoders.ranking.ContentScorer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from llara_kit.data import PreparedData
from llara_kit.encoders import Encoder
from llara_kit.encoders.imputation import SCALES, impute_embeddings, stretched, with_imputed
from llara_kit.encoders.ranking import ContentScorer, candidate_scores
from llara_kit.metrics import target_ranks
from llara_kit.model.item_text import item_texts, text_vectors
from llara_kit.model.llm import Backbone
from llara_kit.storage import atomic_path, read_metadata, read_tensors

FILE = "new_items.safetensors"  # in a run folder


@dataclass
class ItemSignals:
    """Per item: the frozen LLM's text vector and the imputed encoder embedding."""

    text_vectors: np.ndarray  # (n_items + 1, D) the frozen LLM's reading of the item text
    imputed: np.ndarray  # (n_items + 1, d) encoder embeddings from text (trained: out of fold)
    is_new: np.ndarray  # (n_items + 1,) bool: held out as new by the data
    scale: float = 1.0  # how far the imputations were stretched (chosen on valid)

    def __post_init__(self) -> None:
        self._content = ContentScorer(self.text_vectors)

    def save(self, folder: Path) -> None:
        with atomic_path(Path(folder) / FILE) as tmp:
            save_file({"text_vectors": self.text_vectors, "imputed": self.imputed,
                       "is_new": self.is_new.astype(np.uint8)}, str(tmp),
                      metadata={"scale": str(self.scale)})

    @classmethod
    def load(cls, folder: Path) -> ItemSignals | None:
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        scale = float(read_metadata(path)["scale"])
        t = read_tensors(path, "np")
        return cls(t["text_vectors"], t["imputed"], t["is_new"].astype(bool), scale)

    def content(self, history: np.ndarray, lengths: np.ndarray, candidates: np.ndarray
                ) -> np.ndarray:
        """(B, C) the content score of each candidate: history (B, L), lengths (B,)."""
        return self._content.score_items(torch.from_numpy(history), torch.from_numpy(lengths),
                                         torch.from_numpy(candidates)).numpy()

    @torch.no_grad()
    def imputed_scores(self, encoder: Encoder, history: np.ndarray, lengths: np.ndarray,
                       candidates: np.ndarray) -> np.ndarray:
        """(B, C) ``encoder``'s score of each candidate as if its embedding were imputed."""
        device = next(encoder.parameters()).device
        state = encoder.encode(torch.from_numpy(history).to(device),
                               torch.from_numpy(lengths).to(device)).float().cpu()  # (B, d)
        items = torch.from_numpy(self.imputed[candidates])  # (B, C, d)
        return torch.einsum("bcd,bd->bc", items, state).numpy()


def item_signals(backbone: Backbone, llm: str, data: PreparedData, encoder: Encoder,
                 attribute_tokens: int, seed: int, show_progress: bool = True) -> ItemSignals:
    """Read every item's text (title, year, attributes) with the frozen ``backbone`` (before
    LoRA) and impute encoder embeddings from it, fitted on the items training saw, stretched
    by the scale that ranks every valid sample best (``stretched``)."""
    texts = item_texts(data.titles, data.years, data.attributes, backbone.tokenizer,
                       attribute_tokens)
    vectors = text_vectors(backbone, llm, texts, show_progress=show_progress)
    trained = np.zeros(data.n_items + 1, dtype=bool)
    trained[np.unique(data.training_interactions())] = True
    table = encoder.item_embedding.weight.detach().float().cpu().numpy()
    imputed = impute_embeddings(vectors, table, trained, seed)
    scale = max(SCALES, key=lambda x: _valid_hits(encoder, stretched(imputed, table, trained, x),
                                                   data))  # the first of equals
    return ItemSignals(vectors, stretched(imputed, table, trained, scale), data.is_new.copy(),
                       scale)


def _valid_hits(encoder: Encoder, imputed: np.ndarray, data: PreparedData) -> int:
    """HR@1 hits of ``encoder`` with ``imputed`` embeddings for the new items on every valid
    sample (warm and new targets, their stored candidates): how far to stretch them."""
    scorer = with_imputed(encoder, imputed, data.is_new)
    hits = 0
    for split in ("valid", "valid-new"):
        if split in data.splits:
            s = data.splits[split]
            ranks = target_ranks(candidate_scores(scorer, data, split, s.candidates),
                                 s.target_positions())
            hits += int((ranks == 0).sum())
    return hits


def content_features(encoder: torch.Tensor, cold: torch.Tensor, content: torch.Tensor
                     ) -> torch.Tensor:
    """(..., 4) what the content base weighs, from (...) encoder scores, cold flags and
    content scores: the content score, the same for cold candidates only, a cold constant
    and the encoder score of cold candidates."""
    cold = cold.to(content.dtype)
    return torch.stack([content, cold * content, cold, cold * encoder.to(content.dtype)], -1)


def candidate_signals(signals: ItemSignals | None, history: np.ndarray, lengths: np.ndarray,
                      candidates: np.ndarray, dropped: np.ndarray | None = None
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(cold (B, C) bool, content (B, C)) of the candidates (None, None without signals):
    cold are the new items and those ``dropped`` (B, C) shows as new."""
    if signals is None:
        return None, None
    cold = signals.is_new[candidates]
    if dropped is not None:
        cold = cold | dropped
    return cold, signals.content(history, lengths, candidates)
