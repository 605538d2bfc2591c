"""Encoder embeddings for items the encoder never trained on, imputed from their text.

A new item's row of the encoder's embedding table is its random initialisation, pushed down
by every softmax step: the encoder cannot score it. Its text can: a ridge map from the frozen
LLM's vector of each item's text to the encoder's embedding, fitted on the items the encoder
trained on (A-LLMRec's alignment idea, as a closed-form fit), gives every item an embedding
in the encoder's space. The trained items' own imputations are out of fold (scikit-learn's
``cross_val_predict``), so an item shown "as new" in training (item dropout) gets the
embedding a truly new item would get, not one fitted on itself.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from llara_kit.encoders.base import Encoder
from llara_kit.errors import LlaraKitError

ALPHAS = np.logspace(-1, 5, 13)  # ridge penalties tried (generalised cross-validation)
SCALES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # stretches of the imputed deviations tried on valid


def impute_embeddings(text_vectors: np.ndarray, table: np.ndarray, trained: np.ndarray,
                      seed: int, folds: int = 5) -> np.ndarray:
    """(n_items + 1, d) an embedding for every item from its text vector: out of ``folds``
    folds for the ``trained`` items ((n_items + 1,) bool), from the fit on all of them for
    the rest. text_vectors: (n_items + 1, D); table: the encoder's (n_items + 1, d)."""
    fit = np.flatnonzero(trained[1:]) + 1
    if len(fit) < 2 * folds:
        raise LlaraKitError(f"Only {len(fit)} items have a training history; imputing "
                            f"embeddings from text needs at least {2 * folds}.")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    out = np.zeros_like(table, dtype=np.float32)
    out[1:] = model.fit(text_vectors[fit], table[fit]).predict(text_vectors[1:])
    out[fit] = cross_val_predict(model, text_vectors[fit], table[fit],
                                 cv=KFold(folds, shuffle=True, random_state=seed))
    return out


def stretched(imputed: np.ndarray, table: np.ndarray, trained: np.ndarray, scale: float
              ) -> np.ndarray:
    """The imputed embeddings' deviations from the trained items' mean embedding times
    ``scale``: ridge predictions shrink toward that mean, where a new item scores like an
    average one and loses to every warm item the user might like."""
    mean = table[trained].mean(axis=0)
    out = mean + scale * (imputed - mean)
    out[0] = 0.0
    return out.astype(np.float32)


def with_imputed(encoder: Encoder, imputed: np.ndarray, items: np.ndarray) -> Encoder:
    """A copy of ``encoder`` whose embeddings of ``items`` ((n_items + 1,) bool) are the
    imputed ones ((n_items + 1, d)): the encoder that can score new items."""
    out = copy.deepcopy(encoder)
    with torch.no_grad():
        weight = out.item_embedding.weight
        rows = torch.from_numpy(np.flatnonzero(items)).to(weight.device)
        weight[rows] = torch.from_numpy(imputed).to(weight)[rows]
    return out.eval()
