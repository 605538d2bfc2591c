"""BERT4Rec (Sun et al., CIKM 2019): bidirectional self-attention, trained by the cloze task.

Pre-training hides a random share of a sequence's items (and always its last) behind a
learned [mask] vector and predicts each hidden item over all items. As a next-item
recommender it appends one [mask] after the history and reads the state there: the
``encode`` every llara-kit encoder provides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from llara_kit.encoders import Encoder, EncoderConfig
from llara_kit.errors import LlaraKitError


@dataclass
class BERT4RecConfig(EncoderConfig):
    n_layers: int = 2
    n_heads: int = 2
    mask_prob: float = 0.2  # share of items hidden per sequence in pre-training (paper: 0.2)

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise LlaraKitError(f"BERT4Rec mask_prob={self.mask_prob!r} must lie in (0, 1).")
        super().__post_init__()


class BERT4Rec(Encoder):
    """Item + position embeddings, bidirectional pre-norm Transformer blocks over the items
    and one trailing [mask]; positions count back from the [mask] (0)."""

    name = "bert4rec"
    config_class = BERT4RecConfig

    def __init__(self, config: BERT4RecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.mask = nn.Parameter(torch.randn(d) * d**-0.5)
        self.position = nn.Embedding(config.max_len + 1, d)  # max_len items, then [mask]
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, dim_feedforward=4 * d, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def _states(self, seq: torch.Tensor, lengths: torch.Tensor,
                hidden: torch.Tensor) -> torch.Tensor:
        """States of every position: (B, T) ids, (B,) lengths, (B, T) bool hidden -> (B, T, d).

        ``seq[b, :lengths[b]]`` are the items; hidden positions read the [mask] vector.
        """
        T = seq.shape[1]
        positions = torch.arange(T, device=seq.device)
        back = (lengths[:, None] - 1 - positions).clamp(min=0)  # (B, T)
        x = self.item_embedding(seq) * math.sqrt(self.hidden_size)
        x = torch.where(hidden[..., None], self.mask * math.sqrt(self.hidden_size), x)
        x = x + self.position(back)
        padding = positions[None, :] >= lengths[:, None]  # (B, T), True = ignored as a key
        return self.norm(self.blocks(self.dropout(x), src_key_padding_mask=padding))

    def encode(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """State at a [mask] after the history: (B, L), (B,) -> (B, d)."""
        B, L = seq.shape
        rows = torch.arange(B, device=seq.device)
        extended = torch.cat([seq, seq.new_zeros(B, 1)], dim=1)  # (B, L + 1)
        hidden = torch.zeros_like(extended, dtype=torch.bool)
        hidden[rows, lengths] = True
        states = self._states(extended, lengths + 1, hidden)  # (B, L + 1, d)
        return states[rows, lengths]

    def pretrain_loss(self, seq: torch.Tensor, lengths: torch.Tensor,
                      targets: torch.Tensor) -> torch.Tensor:
        """Cloze loss: (B, L) histories, (B,) lengths, (B,) next items -> scalar.

        The target joins the sequence; each item is hidden with ``mask_prob`` and the last
        always, and every hidden item is predicted over all items (cross-entropy).
        """
        B, L = seq.shape
        rows = torch.arange(B, device=seq.device)
        full = torch.cat([seq, seq.new_zeros(B, 1)], dim=1)  # (B, L + 1)
        full[rows, lengths] = targets
        n = lengths + 1
        inside = torch.arange(L + 1, device=seq.device)[None, :] < n[:, None]  # (B, L + 1)
        hidden = (torch.rand(full.shape, device=seq.device) < self.config.mask_prob) & inside
        hidden[rows, lengths] = True
        states = self._states(full, n, hidden)  # (B, L + 1, d)
        scores = states[hidden] @ self.item_embedding.weight.T  # (hidden items, n_items + 1)
        scores[:, 0] = float("-inf")
        return F.cross_entropy(scores, full[hidden])
