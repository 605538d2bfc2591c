"""A third-party llara-kit plugin: a low-rank projector d -> r -> H.

Install it next to llara-kit (``pip install -e plugins/llara-kit-lowrank``) and
``llara-kit list-plugins`` shows it; ``--projector lowrank`` then selects it.
"""

import torch
from torch import nn

from llara_kit import hookimpl


class LowRankProjector(nn.Module):
    """Linear(d -> rank) then Linear(rank -> H): fewer parameters than the paper's MLP."""

    def __init__(self, in_dim: int, out_dim: int, rank: int = 16):
        super().__init__()
        self.down = nn.Linear(in_dim, rank, bias=False)
        self.up = nn.Linear(rank, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))  # (..., d) -> (..., rank) -> (..., H)


@hookimpl
def register_projectors(register):
    register("lowrank", LowRankProjector, description="Linear d -> r -> H (r = 16)")
