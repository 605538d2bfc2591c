"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from llara_kit.encoders.base import Encoder, EncoderConfig, last_valid


@dataclass
class SASRecConfig(EncoderConfig):
    n_layers: int = 2
    n_heads: int = 1


class SASRec(Encoder):
    """Item + position embeddings, pre-norm causal Transformer blocks, state at the last item.

    Positions count back from the most recent item (0 = latest), so a left-aligned history of
    any length puts its latest item at the same position embedding.
    """

    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.position = nn.Embedding(config.max_len, d)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, dim_feedforward=d, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def encode(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, L = seq.shape
        back = (lengths[:, None] - 1 - torch.arange(L, device=seq.device)).clamp(min=0)  # (B, L)
        x = self.item_embedding(seq) * math.sqrt(self.hidden_size) + self.position(back)
        causal = nn.Transformer.generate_square_subsequent_mask(L, device=seq.device)  # (L, L)
        h = self.blocks(self.dropout(x), mask=causal, is_causal=True)  # (B, L, d)
        return self.norm(last_valid(h, lengths))  # (B, d)
