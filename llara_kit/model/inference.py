"""Inference with a LLaRA model: candidate log-likelihoods and (constrained) greedy answers.

Batches are padded on the left; positions follow the attention mask, so padding never
changes a result.
"""

from __future__ import annotations

import inspect

import torch
from torch.nn import functional as F

from llara_kit.model.batching import answer_ids, collate
from llara_kit.model.llara import LlaraModel
from llara_kit.model.prompts import Prompt


@torch.no_grad()
def candidate_logprobs(model: LlaraModel, prompts: list[Prompt],
                       candidates: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-likelihood of each candidate answer after its prompt: (sum, token count), (B, C) each.

    The prompt runs once per sample; its key/value cache is repeated over the C candidates,
    which then run together as one batch of continuations.
    """
    device = next(model.parameters()).device
    B, C = len(prompts), len(candidates[0])
    batch = collate(model, prompts, [None] * B, pad_left=True).to(device)
    embeds = model.input_embeddings(batch)  # (B, P, H)
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    decoder, head = model.llm.get_decoder(), model.llm.get_output_embeddings()
    out = decoder(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                  position_ids=positions, use_cache=True)
    first = F.log_softmax(head(out.last_hidden_state[:, -1]).float(), -1)  # (B, V)

    answers = [answer_ids(model, t) for row in candidates for t in row]  # B*C lists
    width = max(map(len, answers))
    ids = torch.full((B * C, width), model.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((B * C, width), dtype=torch.long)
    for r, a in enumerate(answers):
        ids[r, : len(a)], mask[r, : len(a)] = torch.tensor(a), 1
    ids, mask = ids.to(device), mask.to(device)

    cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters \
        else "past_key_values"  # renamed in recent transformers
    cache = getattr(out, cache_arg)
    cache.batch_repeat_interleave(C)
    prompt_mask = batch.attention_mask.repeat_interleave(C, 0)  # (B*C, P)
    start = prompt_mask.sum(-1, keepdim=True)  # (B*C, 1) next position
    cont = decoder(input_ids=ids, attention_mask=torch.cat([prompt_mask, mask], 1),
                   position_ids=start + torch.arange(width, device=device),
                   use_cache=True, **{cache_arg: cache})
    later = F.log_softmax(head(cont.last_hidden_state[:, :-1]).float(), -1)  # (B*C, W-1, V)

    token_lp = torch.cat([
        first.repeat_interleave(C, 0).gather(1, ids[:, :1]),  # (B*C, 1)
        later.gather(2, ids[:, 1:, None]).squeeze(2),  # (B*C, W-1)
    ], 1) * mask
    return token_lp.sum(1).view(B, C).cpu(), mask.sum(1).view(B, C).cpu()


class _Trie:
    """Token-id prefix tree over candidate answers, for constrained decoding."""

    def __init__(self, sequences: list[list[int]]):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for t in seq:
                node = node.setdefault(t, {})

    def allowed(self, prefix: list[int]) -> list[int]:
        node = self.root
        for t in prefix:
            node = node.get(t, {})
        return list(node)


@torch.no_grad()
def greedy_answers(model: LlaraModel, prompts: list[Prompt],
                   constrain_to: list[list[str]] | None = None,
                   max_new_tokens: int = 32) -> list[str]:
    """Greedy answers; with ``constrain_to`` each answer is forced to be one of its titles."""
    device = next(model.parameters()).device
    batch = collate(model, prompts, [None] * len(prompts), pad_left=True).to(device)
    embeds = model.input_embeddings(batch)
    tok = model.tokenizer
    allowed = None
    if constrain_to is not None:
        tries = [_Trie([answer_ids(model, t) for t in row]) for row in constrain_to]

        def allowed(b: int, generated: torch.Tensor) -> list[int]:
            # from inputs_embeds alone, generate passes only the tokens produced so far
            return tries[b].allowed(generated.tolist()) or [tok.eos_token_id]

        max_new_tokens = max(len(answer_ids(model, t)) for r in constrain_to for t in r)
    out = model.llm.generate(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, do_sample=False,
        max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, prefix_allowed_tokens_fn=allowed,
    )
    return [tok.decode(row, skip_special_tokens=True) for row in out]
