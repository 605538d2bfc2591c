"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU over the item sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llara_kit.encoders.base import Encoder, EncoderConfig, last_valid


@dataclass
class GRU4RecConfig(EncoderConfig):
    n_layers: int = 1


class GRU4Rec(Encoder):
    """Embedding, dropout, GRU, a dense layer back to d; the state after the last item."""

    name = "gru4rec"
    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(d, d, num_layers=config.n_layers, batch_first=True)
        self.dense = nn.Linear(d, d)

    def encode(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.dropout(self.item_embedding(seq)))  # (B, L, d); causal in time
        return self.dense(last_valid(h, lengths))  # (B, d)
