"""Turning rendered prompts into padded token batches."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import torch

from llara_kit.errors import LlaraKitError
from llara_kit.model.llm import Tokenizer
from llara_kit.model.prompts import Prompt

IGNORE = -100  # label of tokens outside the target


class Vocabulary(Protocol):
    """What turns prompts into tokens: a ``Backbone``, or the ``LlaraModel`` built on one."""

    tokenizer: Tokenizer
    placeholder_id: int  # follows each title in text-only prompts
    behaviour_id: int  # follows each title in hybrid prompts; its embedding is projected


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 = real token
    labels: torch.Tensor  # (B, T) answer token ids, IGNORE elsewhere
    item_ids: torch.Tensor  # (K,) one per behavioural token, in row-major order
    item_rows: torch.Tensor  # (K,) the row of each behavioural token
    item_is_candidate: torch.Tensor  # (K,) bool: the token follows a candidate
    hybrid: torch.Tensor  # (B,) bool: the sample uses the hybrid prompt
    history: torch.Tensor  # (B, L) hybrid rows' history item ids, left-aligned, 0 = padding
    lengths: torch.Tensor  # (B,) history lengths (0 for text-only rows)
    candidate_at: torch.Tensor  # (B, C) positions of the candidates' item markers
    target_pos: torch.Tensor  # (B,) index of the target among the candidates, -1 if unknown
    # (B, C) the encoder's score of each candidate; None: the model computes it (hybrid rows)
    base_scores: torch.Tensor | None = None
    # with item signals (model/new_items.py): (B, C) bool, the candidate is shown as new,
    # and (B, C) its content score
    cold: torch.Tensor | None = None
    content_scores: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: None if (v := getattr(self, f.name)) is None else v.to(device)
                        for f in fields(self)})

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def answer_ids(vocab: Vocabulary, answer: str) -> list[int]:
    """The tokens of an answer after the prompt: `` <answer><eos>`` (trained and scored)."""
    tok = vocab.tokenizer
    return tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def encode(vocab: Vocabulary, prompt: Prompt, answer: str | None
           ) -> tuple[list[int], list[int]]:
    """Token ids and labels of prompt + `` <answer><eos>``; only the answer is labelled."""
    ids = vocab.tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    n_behaviour = sum(i == vocab.behaviour_id for i in ids)
    if n_behaviour != len(prompt.item_ids):
        raise LlaraKitError(
            f"The prompt holds {n_behaviour} behavioural tokens for {len(prompt.item_ids)} items; "
            "a template must put exactly one after each title."
        )
    labels = [IGNORE] * len(ids)
    if answer is not None:
        tail = answer_ids(vocab, answer)
        ids, labels = ids + tail, labels + tail
    return ids, labels


def _marker_positions(vocab: Vocabulary, ids: list[int], prompt: Prompt) -> list[int]:
    """Positions of the candidates' item markers: the last ``n_candidates`` markers."""
    markers = (vocab.placeholder_id, vocab.behaviour_id)
    at = [t for t, i in enumerate(ids) if i in markers]
    if len(at) < prompt.n_candidates:
        raise LlaraKitError(
            f"The prompt holds {len(at)} item markers for {prompt.n_candidates} candidates; "
            "a template must put one after each title."
        )
    return at[len(at) - prompt.n_candidates:]


def collate(vocab: Vocabulary, prompts: list[Prompt], answers: list[str | None],
            target_pos: list[int] | None = None, pad_left: bool = False,
            base_scores: torch.Tensor | None = None, cold: torch.Tensor | None = None,
            content: torch.Tensor | None = None) -> Batch:
    """Pad a list of samples into one batch (left padding for generation); ``base_scores``
    (B, C): the encoder's score of each candidate, when the caller has it; ``cold`` and
    ``content`` (B, C): which candidates are shown as new, and their content scores."""
    encoded = [encode(vocab, p, a) for p, a in zip(prompts, answers, strict=True)]
    width = max(len(ids) for ids, _ in encoded)
    pad = vocab.tokenizer.pad_token_id
    B = len(encoded)
    input_ids = torch.full((B, width), pad, dtype=torch.long)
    labels = torch.full((B, width), IGNORE, dtype=torch.long)
    mask = torch.zeros((B, width), dtype=torch.long)
    n_cand = {p.n_candidates for p in prompts}
    C = n_cand.pop() if len(n_cand) == 1 else 0  # candidate scoring needs one C per batch
    candidate_at = torch.zeros((B, C), dtype=torch.long)
    for row, ((ids, lab), prompt) in enumerate(zip(encoded, prompts, strict=True)):
        offset = width - len(ids) if pad_left else 0
        cols = slice(offset, offset + len(ids))
        input_ids[row, cols] = torch.tensor(ids)
        labels[row, cols] = torch.tensor(lab)
        mask[row, cols] = 1
        if C:
            candidate_at[row] = torch.tensor(_marker_positions(vocab, ids, prompt)) + offset
    histories = [p.item_ids[: len(p.item_ids) - p.n_candidates] for p in prompts]
    history = torch.zeros((B, max(1, *map(len, histories))), dtype=torch.long)
    for row, h in enumerate(histories):
        history[row, : len(h)] = torch.tensor(h, dtype=torch.long)
    item_ids = [i for p in prompts for i in p.item_ids]
    rows = [r for r, p in enumerate(prompts) for _ in p.item_ids]
    is_candidate = [k >= len(p.item_ids) - p.n_candidates
                    for p in prompts for k in range(len(p.item_ids))]
    return Batch(
        input_ids, mask, labels, torch.tensor(item_ids, dtype=torch.long),
        torch.tensor(rows, dtype=torch.long), torch.tensor(is_candidate, dtype=torch.bool),
        torch.tensor([bool(p.item_ids) for p in prompts]), history,
        torch.tensor([len(h) for h in histories], dtype=torch.long), candidate_at,
        torch.tensor(target_pos if target_pos is not None else [-1] * B, dtype=torch.long),
        None if base_scores is None else torch.as_tensor(base_scores, dtype=torch.float32),
        None if cold is None else torch.as_tensor(cold, dtype=torch.bool),
        None if content is None else torch.as_tensor(content, dtype=torch.float32),
    )
