"""How long a run's prompts get, checked before slow work starts: titles cut to a number of
tokens (a description pasted into a title column would otherwise make one prompt thousands of
tokens long), the longest prompt of a split against a ceiling, and the memory a training
micro-batch of such prompts needs against what the device has free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llara_kit.config import TrainConfig
from llara_kit.data import PreparedData
from llara_kit.errors import LlaraKitError
from llara_kit.model.item_text import item_texts
from llara_kit.model.llm import Backbone
from llara_kit.model.prompts import Template

ELLIPSIS = "…"


@dataclass(frozen=True)
class TitleCut:
    """Titles (indexed by item id) cut to ``limit`` tokens; how many were cut, and the
    longest title before cutting (its item id and length in tokens)."""

    titles: list[str]
    limit: int  # 0: titles are whole
    cut: int
    longest_item: int
    longest_tokens: int

    def describe(self, raw_item_ids: list[str]) -> str:
        """One line for `data info` and the training log."""
        longest = (f"the longest has {self.longest_tokens} tokens (item "
                   f"{raw_item_ids[self.longest_item]!r})")
        if not self.limit:
            return f"titles kept whole; {longest}"
        share = self.cut / max(len(self.titles) - 1, 1)
        titles = "1 title" if self.cut == 1 else f"{self.cut:,} titles"
        return (f"{titles} ({share:.1%}) cut to {self.limit} tokens; {longest}"
                if self.cut else f"no title over {self.limit} tokens; {longest}")


def token_counts(titles: list[str], tokenizer) -> np.ndarray:
    """Tokens of each title as a prompt holds it (after a space): (n_items + 1,), 0 at 0."""
    ids = tokenizer([" " + t for t in titles[1:]], add_special_tokens=False)["input_ids"]
    return np.array([0] + [len(x) for x in ids], dtype=np.int64)


def cut_titles(titles: list[str], tokenizer, limit: int) -> TitleCut:
    """Every title longer than ``limit`` tokens cut to its first ``limit`` tokens plus an
    ellipsis (``limit`` 0 keeps them whole)."""
    counts = token_counts(titles, tokenizer)
    longest = int(np.argmax(counts))
    out = list(titles)
    over = np.flatnonzero(counts > limit) if limit else np.array([], dtype=np.int64)
    for item in over:
        ids = tokenizer(" " + titles[item], add_special_tokens=False)["input_ids"][:limit]
        out[item] = tokenizer.decode(ids).strip().rstrip("\ufffd").rstrip() + ELLIPSIS
    return TitleCut(out, limit, len(over), longest, int(counts[longest]))


@dataclass(frozen=True)
class Longest:
    """A split's longest prompt: its length in tokens, and which sample it is."""

    tokens: int
    split: str
    user: str


def longest_prompt(data: PreparedData, split: str, template: Template, tokenizer,
                   counts: np.ndarray | None = None) -> Longest:
    """The longest prompt of ``split`` with the run's item texts (cut titles, with attributes
    where the run shows them), answer included (``counts``: the texts' ``token_counts``, if
    known). Train samples draw their candidates anew
    each epoch, so theirs is bounded by the longest history with the longest titles of the
    catalogue as candidates."""
    counts = token_counts(data.item_texts, tokenizer) if counts is None else counts
    s = data.splits[split]
    mask = np.arange(s.history.shape[1])[None, :] < s.lengths[:, None]
    history = (counts[s.history] * mask).sum(1)  # (n,)
    if s.candidates is not None:
        candidates = s.candidates  # (n, C)
        i = int(np.argmax(history + counts[candidates].sum(1)))
        chosen = candidates[i].tolist()
    else:
        i = int(np.argmax(history))
        target = int(s.targets[i])
        longest_first = np.argsort(-counts, kind="stable")[: data.settings.candidates + 1]
        others = [int(x) for x in longest_first if x not in (0, target)]
        chosen = [target, *others[: data.settings.candidates - 1]]
    texts = {template.render(data.item_texts, s.history_of(i), chosen, True, phrasing).text
             for phrasing in range(phrasings_of(template))}
    prompt = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    answer = int(token_counts(data.titles, tokenizer).max()) + 1  # `` <title><eos>`` (title)
    return Longest(prompt + answer, split, data.raw_user_ids[int(s.users[i])])


def phrasings_of(template: Template) -> int:
    """How many phrasings ``template`` renders (training draws any of them)."""
    n = getattr(template, "n_phrasings", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise LlaraKitError(
            f"The prompt template {type(template).__name__} has n_phrasings={n!r}; give it an "
            "`n_phrasings` attribute, the count of phrasings it renders (a positive integer; "
            "llara_kit.model.prompts.Template).")
    return n


def fit_prompts(cfg: TrainConfig, data: PreparedData, backbone: Backbone,
                template: Template, splits: tuple[str, ...]) -> tuple[TitleCut, Longest]:
    """Cut ``data``'s titles to ``cfg.title_tokens`` (the run's view of them: every answer is
    built from ``data.titles``), set the texts prompts show (``data.item_texts``: the titles,
    or with ``item_text`` "attributes" the titles with year and attributes) and refuse, in
    one sentence, a split whose longest prompt passes ``cfg.max_prompt_tokens`` (0: the LLM's
    context length). Returns the cut and the longest prompt."""
    cut = cut_titles(data.titles, backbone.tokenizer, cfg.title_tokens)
    data.titles = cut.titles
    data.item_texts = (item_texts(data.titles, data.years, data.attributes,
                                  backbone.tokenizer, cfg.attribute_tokens)
                       if cfg.item_text == "attributes" else data.titles)
    ceiling = cfg.max_prompt_tokens or context_length(backbone)
    counts = token_counts(data.item_texts, backbone.tokenizer)  # tokenized once
    longest = max((longest_prompt(data, split, template, backbone.tokenizer, counts)
                   for split in splits), key=lambda x: x.tokens)
    if ceiling and longest.tokens > ceiling:
        what = "" if cfg.max_prompt_tokens else ", the LLM's context length"
        raise LlaraKitError(
            f"The longest {longest.split} prompt (user {longest.user!r}) has "
            f"{longest.tokens:,} tokens, over --max-prompt-tokens {ceiling:,}{what}; lower "
            "--title-tokens or --history.")
    return cut, longest


def context_length(backbone: Backbone) -> int:
    """The LLM's context length in tokens (0 when its config does not say)."""
    return int(getattr(backbone.model.config, "max_position_embeddings", 0) or 0)


def step_memory(n_layers: int, hidden: int, heads: int, batch: int, tokens: int,
                bytes_per_value: int, checkpointing: bool) -> int:
    """Bytes a training micro-batch of ``batch`` prompts of ``tokens`` tokens needs on top of
    the loaded weights, at its peak: per layer what backward keeps, about 32 values per token
    and hidden unit plus the attention probabilities (batch x heads x tokens^2): an upper
    envelope of the peak memory of real training steps (docs/training.md, "Prompt lengths and
    memory"). Gradient checkpointing halved the one peak measured with it. The objectives
    apply the LM head only where an answer is, so there are no logits over every token."""
    per_layer = batch * tokens * (32 * hidden + heads * tokens) * bytes_per_value
    return n_layers * per_layer // (2 if checkpointing else 1)
