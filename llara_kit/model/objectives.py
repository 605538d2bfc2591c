"""Built-in training objectives (plugin module): ``title`` (the paper's) and ``head``.

An objective decides how a training prompt ends (``answer``), which trainable parts it adds
(its own parameters, trained with the LoRA and saved in the run folder), its loss, and how it
scores the candidates at evaluation and in ``recommend``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from llara_kit.errors import LlaraKitError
from llara_kit.model.batching import IGNORE, Batch, collate
from llara_kit.model.inference import candidate_logprobs
from llara_kit.model.prompts import Prompt


class Objective(nn.Module):
    """Base class. ``factory(hidden_size, **options)`` builds one; subclasses implement
    ``answer``, ``loss`` and ``score``."""

    def answer(self, target: str) -> str | None:
        """Text the LLM is trained to write after the prompt (None: nothing)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Training loss of a ``LlaraModel`` on ``batch`` (a scalar)."""
        raise NotImplementedError

    def score(self, model: nn.Module, prompts: list[Prompt], candidates: list[list[str]],
              base_scores: torch.Tensor | None = None, **signals: torch.Tensor) -> torch.Tensor:
        """Scores of each prompt's candidates by the ``LlaraModel`` ``model``, higher is
        better: (B, C) on the CPU. ``base_scores`` (B, C): the run's encoder's scores of them;
        ``signals``: ``cold`` and ``content`` (B, C) where the run has item signals (see
        ``collate``)."""
        raise NotImplementedError


class TitleObjective(Objective):
    """The paper's objective: next-token cross-entropy on `` <title><eos>``; candidates are
    ranked by the length-normalised log-likelihood of their titles."""

    def __init__(self, hidden_size: int):
        super().__init__()

    def answer(self, target: str) -> str:
        return target

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        hidden = model.hidden_states(batch)[:, :-1]  # (B, T-1, H) predicts tokens 1..T-1
        targets = batch.labels[:, 1:]  # (B, T-1)
        where = targets != IGNORE
        logits = model.llm.get_output_embeddings()(hidden[where])  # (N, V): LM head where needed
        return F.cross_entropy(logits.float(), targets[where])

    @torch.no_grad()
    def score(self, model, prompts, candidates, base_scores=None, **signals) -> torch.Tensor:
        total, n_tokens = candidate_logprobs(model, prompts, candidates)
        return total / n_tokens  # (B, C)


class HeadObjective(Objective):
    """A linear score head on the last hidden state at each candidate's item marker (its
    behavioural token, or the placeholder in text-only prompts), trained by cross-entropy over
    the candidates' scores (listwise). Scoring takes one forward pass per prompt.

    ``residual``: a candidate's score is ``alpha * encoder score + head(state)``, the head
    starting at zero and ``alpha`` at 1, so an untrained model ranks exactly as its encoder
    and training learns a correction. The encoder's score enters every row, text-only ones
    included (the encoder reads the item ids whatever the prompt shows); with the run's
    ``content_base``, so does a learned mix of the content score (``LlaraModel.content_base``).
    """

    def __init__(self, hidden_size: int, residual: bool = False):
        super().__init__()
        if not isinstance(residual, bool):
            raise LlaraKitError(f"Objective option residual={residual!r}: use true or false.")
        self.head = nn.Linear(hidden_size, 1)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.alpha = nn.Parameter(torch.ones(()))

    def answer(self, target: str) -> None:
        return None  # the prompt ends at "Answer:"; the head reads the candidates' markers

    def candidate_scores(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        hidden = model.hidden_states(batch)  # (B, T, H)
        at = batch.candidate_at.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])  # (B, C, H)
        # in the head's dtype: bf16 hidden states of a bf16 backbone run without autocast
        states = hidden.gather(1, at).to(self.head.weight.dtype)  # (B, C, H)
        scores = self.head(states).squeeze(-1).float()  # (B, C)
        if not self.residual:
            return scores
        return scores + self.alpha * model.encoder_scores(batch) + model.content_base(batch)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.candidate_scores(model, batch), batch.target_pos)

    @torch.no_grad()
    def score(self, model, prompts, candidates, base_scores=None, **signals) -> torch.Tensor:
        device = next(model.parameters()).device
        batch = collate(model, prompts, [None] * len(prompts), base_scores=base_scores,
                        **signals).to(device)
        return self.candidate_scores(model, batch).cpu()  # (B, C)
