"""The encoder contract, and saving/loading encoders as safetensors + JSON.

An encoder is a sequential recommender over item ids 1..n_items (0 is padding). Sequences
arrive left-aligned: ``seq[b, :lengths[b]]`` are the items in time order, the rest is padding
whose content must not matter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from llara_kit.errors import LlaraKitError
from llara_kit.plugins import get_component
from llara_kit.storage import atomic_path, read_json, read_tensors, write_json
from llara_kit.version import VERSION

WEIGHTS, CONFIG = "encoder.safetensors", "encoder.json"


@dataclass
class EncoderConfig:
    """Settings every encoder shares; subclasses add their own fields."""

    n_items: int  # item ids run 1..n_items
    hidden_size: int = 64  # d, the behavioural vector size (paper: 64)
    max_len: int = 10  # longest history
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "dropout":
                if not 0.0 <= value < 1.0:
                    raise LlaraKitError(f"Encoder dropout={value!r} must lie in [0, 1).")
            elif isinstance(value, int) and value < 1:
                raise LlaraKitError(f"Encoder setting {f.name}={value!r} must be positive.")


class Encoder(nn.Module):
    """Base class: item embedding table, scoring over all items, save/load.

    Subclasses set ``name`` and ``config_class`` and implement ``encode``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items + 1, config.hidden_size, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=config.hidden_size**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @classmethod
    def config_from(cls, **options: Any) -> EncoderConfig:
        """The config for ``options``; an unknown setting is one sentence listing the known."""
        names = {f.name for f in fields(cls.config_class)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise LlaraKitError(
                f"Encoder {cls.name!r} has no setting {unknown[0]!r}; its settings are: "
                f"{', '.join(sorted(names))}."
            )
        return cls.config_class(**options)

    @classmethod
    def from_options(cls, **options: Any) -> Encoder:
        return cls(cls.config_from(**options))

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def item_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """The behavioural vectors LLaRA injects: (...) item ids -> (..., d)."""
        return self.item_embedding(ids)

    def encode(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """User state after the sequence: (B, L) ids, (B,) lengths -> (B, d)."""
        raise NotImplementedError

    def pretrain_loss(self, seq: torch.Tensor, lengths: torch.Tensor,
                      targets: torch.Tensor) -> torch.Tensor:
        """The loss ``llara-kit pretrain`` minimises: (B, L) histories, (B,) lengths, (B,) next
        items -> scalar. Default: next-item cross-entropy over all items; override it for
        another objective (masked items, contrastive views). Randomness comes from torch's
        global generator, which pre-training seeds."""
        return F.cross_entropy(self(seq, lengths), targets)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores of every item as the next one: (B, L), (B,) -> (B, n_items + 1).

        Column 0 (padding) is -inf so it never ranks.
        """
        if lengths.min() < 1 or lengths.max() > seq.shape[1]:
            raise LlaraKitError(f"Sequence lengths must lie in [1, {seq.shape[1]}].")
        state = self.encode(seq, lengths)  # (B, d)
        scores = state @ self.item_embedding.weight.T  # (B, n_items + 1)
        scores[:, 0] = float("-inf")
        return scores

    def score_items(self, seq: torch.Tensor, lengths: torch.Tensor,
                    items: torch.Tensor) -> torch.Tensor:
        """Scores of the given items only, the columns ``forward`` would give them:
        (B, L), (B,), (B, K) ids -> (B, K), from the K items' own embeddings (no score of
        every item). An encoder that overrides ``forward`` overrides this too."""
        state = self.encode(seq, lengths)  # (B, d)
        scores = (self.item_embedding(items) * state[:, None, :]).sum(-1)  # (B, K)
        return scores.masked_fill(items == 0, float("-inf"))

    def sampled_loss(self, seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                     negatives: torch.Tensor) -> torch.Tensor:
        """Next-item cross-entropy over each target and ``negatives``, (K,) items drawn
        uniformly for the whole batch (a sampled softmax: (B, K + 1) logits instead of
        (B, n_items + 1); with a uniform draw no log-probability correction is needed). A
        negative equal to a row's target is left out of that row."""
        state = self.encode(seq, lengths)  # (B, d)
        positive = (self.item_embedding(targets) * state).sum(-1, keepdim=True)  # (B, 1)
        drawn = state @ self.item_embedding(negatives).T  # (B, K)
        drawn = drawn.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive, drawn], dim=1)  # (B, K + 1), the target first
        return F.cross_entropy(logits, torch.zeros_like(targets))

    def save(self, folder: Path) -> None:
        """Write ``encoder.safetensors`` and ``encoder.json`` (atomically) into ``folder``."""
        folder = Path(folder)
        with atomic_path(folder / WEIGHTS) as tmp:
            state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp))
        meta = {"encoder": self.name, "config": asdict(self.config)}
        write_json(folder / CONFIG, meta | {"llara_kit_version": VERSION})


def load_encoder(folder: Path) -> Encoder:
    """Rebuild an encoder from its folder; the JSON names the registered encoder class."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise LlaraKitError(
            f"{str(folder)!r} holds no saved encoder ({CONFIG} and {WEIGHTS}); "
            "run `llara-kit pretrain` first."
        )
    meta = read_json(folder / CONFIG)
    cls = get_component("encoder", meta["encoder"]).factory
    encoder = cls(cls.config_class(**meta["config"]))
    encoder.load_state_dict(read_tensors(folder / WEIGHTS))
    return encoder.eval()


def right_align(seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's items to the end, zero padding in front: (B, L) -> (B, L)."""
    L = seq.shape[1]
    src = torch.arange(L, device=seq.device) - (L - lengths)[:, None]  # (B, L)
    valid = src >= 0
    return torch.where(valid, seq.gather(1, src.clamp(min=0)), torch.zeros_like(seq))


def last_valid(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The state at each row's last item: (B, L, d), (B,) -> (B, d)."""
    index = (lengths - 1)[:, None, None].expand(-1, 1, states.shape[-1])
    return states.gather(1, index).squeeze(1)
