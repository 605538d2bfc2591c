"""Built-in projectors: behavioural vectors (d) -> LLM input embeddings (H)."""

from __future__ import annotations

import torch
from torch import nn

from llara_kit.errors import LlaraKitError


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise LlaraKitError(f"Projector {name} must be a positive integer, got {value!r}.")


class LinearProjector(nn.Module):
    """One linear map d -> H: the paper's ablation."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        _check_dims(in_dim=in_dim, out_dim=out_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (..., d) -> (..., H)


class MLPProjector(nn.Module):
    """The paper's projector: Linear(d -> hidden) -> GELU -> Linear(hidden -> H)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = out_dim if hidden_dim is None else hidden_dim  # paper: hidden = H
        _check_dims(in_dim=in_dim, out_dim=out_dim, hidden_dim=hidden_dim)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (..., d) -> (..., H)
