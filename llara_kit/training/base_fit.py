"""The residual base fitted before the LLM trains.

With ``content_base`` a residual head's base is ``alpha * encoder score + w . features``
(``model.new_items.content_features``: the content score, cold indicators, the imputed
encoder score). The LLM's few optimizer steps at its learning rate move such weights by about
``steps * lr`` (0.03 at the default 32 steps of 8e-4): from zero they would stay near zero and
the content score would never count. So they start at a listwise logistic fit (softmax over
each list's candidates, L-BFGS, a small L2 penalty) on training lists drawn as training draws
them, item dropout included, and the head learns a correction to the best cheap combination.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from llara_kit.model.new_items import content_features

FIT_SAMPLES = 4096  # training lists the fit reads (no LLM: seconds)
PENALTY = 1e-3


def fit_base(encoder: np.ndarray, cold: np.ndarray, content: np.ndarray,
             target_pos: np.ndarray, steps: int = 200) -> tuple[float, np.ndarray]:
    """(alpha, the four content weights) maximising the listwise likelihood of the targets:
    encoder, cold, content: (n, C); target_pos: (n,)."""
    enc = torch.from_numpy(encoder).double()
    x = torch.cat([enc[..., None], content_features(enc, torch.from_numpy(cold),
                                                    torch.from_numpy(content).double())], -1)
    y = torch.from_numpy(target_pos)
    w = torch.zeros(x.shape[-1], dtype=torch.float64)
    w[0] = 1.0  # the encoder alone
    w.requires_grad_(True)
    optimizer = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ w, y) + PENALTY * (w[1:] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = w.detach().numpy()
    return float(fitted[0]), fitted[1:]
