"""The LLaRA module: an LLM (with LoRA) whose behavioural-token embeddings are projected
encoder vectors, and the objective that trains and scores it. The encoder is frozen; the
projector learns only from hybrid samples, because only they contain behavioural tokens.
The module carries its tokenizer and special token ids, so it turns prompts into batches
itself (``collate(model, ...)``)."""

from __future__ import annotations

import torch
from torch import nn

from llara_kit.encoders import Encoder
from llara_kit.encoders.imputation import with_imputed
from llara_kit.model.batching import Batch, Vocabulary
from llara_kit.model.new_items import ItemSignals, content_features


class LlaraModel(nn.Module):
    def __init__(self, llm: nn.Module, vocab: Vocabulary, encoder: Encoder,
                 projector: nn.Module, objective: nn.Module, user_conditioned: bool = False,
                 user_signal: str = "score", signals: ItemSignals | None = None,
                 content_base: bool = False):
        super().__init__()
        self.llm = llm  # a peft model (or a plain causal LM for zero-shot use)
        self.tokenizer = vocab.tokenizer
        self.placeholder_id, self.behaviour_id = vocab.placeholder_id, vocab.behaviour_id
        # with item signals the new items' embeddings are the imputed ones, so the encoder
        # scores them (its order is then the text-imputed encoder's)
        if signals is not None:
            encoder = with_imputed(encoder, signals.imputed, signals.is_new)
        self.encoder = encoder.eval().requires_grad_(False)
        self.signals = signals
        self.cold_marker = self.content_weights = None
        if signals is not None:
            self.register_buffer("imputed", torch.from_numpy(signals.imputed),
                                 persistent=False)  # (n_items + 1, d)
            self.cold_marker = nn.Linear(1, self.hidden_size, bias=False)  # added to cold tokens
            nn.init.normal_(self.cold_marker.weight, std=0.02)
        if content_base:
            if signals is None:
                raise ValueError("content_base needs item signals")
            # weights of content_features: 0 until the trainer fits them (training/base_fit.py)
            self.content_weights = nn.Linear(4, 1, bias=False)
            nn.init.zeros_(self.content_weights.weight)
        self.projector = projector
        self.objective = objective  # its trainable parts (a score head) train with the LoRA
        self.user_conditioned = user_conditioned
        self.user_signal = user_signal
        # run the behavioural-token path on every batch, on no tokens in a text-only one, so
        # that every rank calls the same modules and every trainable weight gets a gradient
        # (zeros where unused): DeepSpeed needs that (distributed.allow_unused_gradients)
        self.always_project = False
        # with user_signal "score": the direction the encoder's score is written along
        self.score_direction = None
        if user_conditioned and user_signal == "score":
            self.score_direction = nn.Linear(1, self.hidden_size, bias=False)
            nn.init.normal_(self.score_direction.weight, std=0.02)  # a token-sized signal

    @property
    def hidden_size(self) -> int:
        """The LLM's hidden (and input embedding) size H."""
        return self.llm.get_input_embeddings().embedding_dim

    def new_parts(self) -> list[nn.Module]:
        """The trainable parts built from scratch (the LoRA adapts pre-trained weights)."""
        parts = [self.projector, self.objective, self.score_direction, self.cold_marker,
                 self.content_weights]
        return [p for p in parts if p is not None]

    def train(self, mode: bool = True) -> LlaraModel:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout either
        return self

    def encoder_scores(self, batch: Batch) -> torch.Tensor:
        """The encoder's score <item, u> of each candidate given the row's history (user
        state u): (B, C). The batch's own when it carries them (training lists scored by a
        cross-fitted encoder; evaluation, for every row); else computed here from the run's
        encoder for hybrid rows, 0 in text-only rows (whose batches carry no item ids)."""
        if batch.base_scores is not None:
            return batch.base_scores
        B, C = batch.candidate_at.shape
        out = torch.zeros(B, C, device=batch.input_ids.device)
        hybrid = batch.hybrid
        if hybrid.any():
            state = self.encoder.encode(batch.history[hybrid], batch.lengths[hybrid])  # (b, d)
            ids = batch.item_ids[batch.item_is_candidate].view(-1, C)  # (b, C)
            items = self.encoder.item_embeddings(ids)  # (b, C, d)
            out[hybrid] = torch.einsum("bcd,bd->bc", items, state).float()
        return out

    def content_base(self, batch: Batch) -> torch.Tensor | float:
        """The learned content part of a residual head's base: (B, C), or 0 without it."""
        if self.content_weights is None:
            return 0.0
        return self.weighted_content(self.encoder_scores(batch), batch.cold,
                                     batch.content_scores)

    def weighted_content(self, encoder: torch.Tensor, cold: torch.Tensor,
                         content: torch.Tensor) -> torch.Tensor:
        """(B, C) the content weights applied to ``content_features`` of (B, C) encoder
        scores, cold flags and content scores."""
        features = content_features(encoder, cold, content)  # (B, C, 4)
        return self.content_weights(features.to(self.content_weights.weight.dtype)
                                    ).squeeze(-1).float()

    def cold_tokens(self, batch: Batch) -> torch.Tensor | None:
        """(K,) bool: the behavioural token's item is shown as new (None: no item signals)."""
        if self.signals is None or batch.cold is None:
            return None
        out = torch.zeros_like(batch.item_is_candidate)
        out[batch.item_is_candidate] = batch.cold[batch.hybrid].reshape(-1)
        return out

    def behaviour_vectors(self, batch: Batch) -> torch.Tensor:
        """The projected vector of each behavioural token: (K, H).

        projector(item) for every item (a cold candidate's: its imputed embedding's, plus the
        learned cold marker); with ``user_conditioned`` a candidate's token adds
        the encoder's preference for it given the row's history (user state u): with
        ``user_signal`` "score" its score <item, u> times a learned vector, with "product"
        projector(item * u), so that preference is readable by the LLM.
        """
        items = self.encoder.item_embeddings(batch.item_ids)  # (K, d), frozen
        cold = self.cold_tokens(batch)  # (K,) or None
        if cold is not None:  # a cold item's token is its imputed embedding's, marked
            items = torch.where(cold[:, None], self.imputed[batch.item_ids].to(items.dtype), items)
        projected = self.projector(items)  # (K, H)
        if cold is not None:
            marker = self.cold_marker.weight[:, 0].to(projected.dtype)  # (H,)
            projected = projected + cold[:, None].to(projected.dtype) * marker
        if not self.user_conditioned:
            return projected
        cand = batch.item_is_candidate  # (K,) hybrid rows' candidates, row-major
        if self.score_direction is not None:
            scores = self.encoder_scores(batch)[batch.hybrid].reshape(-1, 1)  # (Kc, 1)
            signal = self.score_direction(scores.to(projected.dtype))  # (Kc, H)
        elif batch.hybrid.any():
            hybrid = batch.hybrid
            state = self.encoder.encode(batch.history[hybrid], batch.lengths[hybrid])  # (b, d)
            rows = torch.cumsum(hybrid, 0) - 1  # (B,) a hybrid row's index among them
            joint = items[cand] * state[rows[batch.item_rows[cand]]].to(items.dtype)  # (Kc, d)
            signal = self.projector(joint)  # (Kc, H)
        else:  # no behavioural token (always_project): the same call on nothing
            signal = self.projector(items[cand])  # (0, H)
        return projected.index_add(0, cand.nonzero().squeeze(1), signal.to(projected.dtype))

    def input_embeddings(self, batch: Batch) -> torch.Tensor:
        """Token embeddings with the projected vectors written at the behavioural tokens:
        (B, T, H)."""
        embeds = self.llm.get_input_embeddings()(batch.input_ids)  # (B, T, H)
        if batch.item_ids.numel() == 0 and not self.always_project:
            return embeds
        projected = self.behaviour_vectors(batch).to(embeds.dtype)  # (K, H)
        at = (batch.input_ids == self.behaviour_id).unsqueeze(-1)  # (B, T, 1)
        return embeds.masked_scatter(at, projected)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Last hidden states (B, T, H); positions follow the attention mask, so left and right
        padding give the same result."""
        embeds = self.input_embeddings(batch)
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        decoder = self.llm.get_decoder()  # the transformer without its LM head, LoRA inside
        out = decoder(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                      position_ids=positions, use_cache=False)
        return out.last_hidden_state

    def forward(self, batch: Batch) -> torch.Tensor:
        """The objective's training loss on ``batch`` (a scalar)."""
        return self.objective.loss(self, batch)
