"""Turning rendered prompts into padded token batches."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from llara_kit.errors import LlaraKitError
from llara_kit.llm import Backbone
from llara_kit.prompts import Prompt

IGNORE = -100  # label of tokens outside the target


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 = real token
    labels: torch.Tensor  # (B, T) target token ids, IGNORE elsewhere
    item_ids: torch.Tensor  # (K,) one per behavioural token, in row-major order
    hybrid: torch.Tensor  # (B,) bool: the sample uses the hybrid prompt

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode(backbone: Backbone, prompt: Prompt, target: str | None) -> tuple[list[int], list[int]]:
    """Token ids and labels of prompt + `` <target><eos>``; only the target is labelled."""
    tok = backbone.tokenizer
    ids = tok(prompt.text, add_special_tokens=False)["input_ids"]
    n_behaviour = sum(i == backbone.behaviour_id for i in ids)
    if n_behaviour != len(prompt.item_ids):
        raise LlaraKitError(
            f"The prompt holds {n_behaviour} behavioural tokens for {len(prompt.item_ids)} items; "
            "a template must put exactly one after each title."
        )
    labels = [IGNORE] * len(ids)
    if target is not None:
        answer = tok(" " + target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids, labels = ids + answer, labels + answer
    return ids, labels


def collate(backbone: Backbone, prompts: list[Prompt], targets: list[str | None],
            pad_left: bool = False) -> Batch:
    """Pad a list of samples into one batch (left padding for generation)."""
    encoded = [encode(backbone, p, t) for p, t in zip(prompts, targets, strict=True)]
    width = max(len(ids) for ids, _ in encoded)
    pad = backbone.tokenizer.pad_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(encoded):
        cols = slice(width - len(ids), width) if pad_left else slice(0, len(ids))
        input_ids[row, cols] = torch.tensor(ids)
        labels[row, cols] = torch.tensor(lab)
        mask[row, cols] = 1
    item_ids = [i for p in prompts for i in p.item_ids]
    return Batch(input_ids, mask, labels, torch.tensor(item_ids, dtype=torch.long),
                 torch.tensor([bool(p.item_ids) for p in prompts]))
