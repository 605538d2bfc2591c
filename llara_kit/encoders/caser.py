"""Caser (Tang & Wang, WSDM 2018): horizontal and vertical convolutions over the last L items."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from llara_kit.encoders.base import Encoder, EncoderConfig, right_align


@dataclass
class CaserConfig(EncoderConfig):
    n_vertical: int = 4  # vertical filters (paper: n_v = 4)
    n_horizontal: int = 16  # horizontal filters per height 1..max_len (paper: n_h = 16)


class Caser(Encoder):
    """The L x d embedding "image" of the history, right-aligned with zero padding in front.

    Horizontal filters of every height h = 1..L catch union-level patterns (max-pooled over
    time); vertical filters weight the L positions. No user embedding: LLaRA's test users are
    unseen in training, so a per-user vector could not be learnt for them.
    """

    name = "caser"
    config_class = CaserConfig

    def __init__(self, config: CaserConfig):
        super().__init__(config)
        d, L = config.hidden_size, config.max_len
        self.vertical = nn.Conv2d(1, config.n_vertical, (L, 1))
        self.horizontal = nn.ModuleList(
            nn.Conv2d(1, config.n_horizontal, (h, d)) for h in range(1, L + 1)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.n_vertical * d + config.n_horizontal * L, d)

    def encode(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        L = self.config.max_len
        seq = right_align(seq, lengths)[:, -L:]
        if seq.shape[1] < L:  # shorter batches: pad in front
            seq = F.pad(seq, (L - seq.shape[1], 0))
        image = self.item_embedding(seq).unsqueeze(1)  # (B, 1, L, d)
        vertical = self.vertical(image).flatten(1)  # (B, n_v * d)
        horizontal = [
            F.relu(conv(image).squeeze(3)).amax(dim=2)  # (B, n_h, L - h + 1) -> (B, n_h)
            for conv in self.horizontal
        ]
        z = torch.cat([vertical, *horizontal], dim=1)  # (B, n_v * d + n_h * L)
        return F.relu(self.fc(self.dropout(z)))  # (B, d)
