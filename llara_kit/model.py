"""The LLaRA module: an LLM (with LoRA) whose behavioural-token embeddings are projected
encoder vectors. The encoder is frozen; the projector learns only from hybrid samples,
because only they contain behavioural tokens."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from llara_kit.batching import IGNORE, Batch
from llara_kit.encoders import Encoder


class LlaraModel(nn.Module):
    def __init__(self, llm: nn.Module, encoder: Encoder, projector: nn.Module,
                 behaviour_id: int):
        super().__init__()
        self.llm = llm  # a peft model (or a plain causal LM for zero-shot use)
        self.encoder = encoder.eval().requires_grad_(False)
        self.projector = projector
        self.behaviour_id = behaviour_id

    def train(self, mode: bool = True) -> LlaraModel:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout either
        return self

    def input_embeddings(self, input_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the projected item vectors written at the behavioural tokens.

        input_ids: (B, T); item_ids: (K,) in row-major order of the behavioural tokens.
        Returns (B, T, H).
        """
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, T, H)
        if item_ids.numel() == 0:
            return embeds
        behaviour = self.encoder.item_embeddings(item_ids)  # (K, d), frozen
        projected = self.projector(behaviour).to(embeds.dtype)  # (K, H)
        at = (input_ids == self.behaviour_id).unsqueeze(-1)  # (B, T, 1)
        return embeds.masked_scatter(at, projected)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Last hidden states (B, T, H); positions follow the attention mask, so left and right
        padding give the same result."""
        embeds = self.input_embeddings(batch.input_ids, batch.item_ids)
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        decoder = self.llm.get_decoder()  # the transformer without its LM head, LoRA inside
        out = decoder(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                      position_ids=positions, use_cache=False)
        return out.last_hidden_state

    def forward(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the target tokens; the LM head runs only where needed."""
        hidden = self.hidden_states(batch)[:, :-1]  # (B, T-1, H) predicts tokens 1..T-1
        targets = batch.labels[:, 1:]  # (B, T-1)
        where = targets != IGNORE
        logits = self.llm.get_output_embeddings()(hidden[where])  # (N, V)
        return F.cross_entropy(logits.float(), targets[where])
