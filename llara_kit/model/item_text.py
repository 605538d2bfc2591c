"""An item's text beyond its title, and what the frozen LLM makes of it.

``item_texts`` renders each item as its title plus what the data set knows of it (year,
genres, tags): ``"Toy Story (1995; Animation, Children's, Comedy)"``, keeping attributes in
their order while they fit a token budget. ``text_vectors`` reads those texts with the
frozen LLM (the mean last hidden state of each), cached per LLM and texts: the content signal
that exists for an item nobody has interacted with yet (the text-imputed embeddings, the
content baseline).
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors.numpy import save_file

from llara_kit.model.llm import Backbone, Tokenizer
from llara_kit.progress import Progress
from llara_kit.storage import atomic_path, cache_home, read_tensors, sha256_json
from llara_kit.version import VERSION


def describe(title: str, year: int | None, attributes: list[str]) -> str:
    """``"Toy Story (1995; Animation, Comedy)"``; the title alone without year or attributes."""
    facts = "; ".join(p for p in (str(year) if year else "", ", ".join(attributes)) if p)
    return f"{title} ({facts})" if facts else title


def _within(attributes: list[str], tokens: dict[str, int], budget: int) -> list[str]:
    """The leading attributes whose tokens (with their separators) fit ``budget`` (0: all)."""
    kept, used = [], 0
    for a in attributes:
        used += tokens[a] + 1
        if budget and used > budget:
            break
        kept.append(a)
    return kept


def item_texts(titles: list[str], years: list[int | None], attributes: list[list[str]],
               tokenizer: Tokenizer, attribute_tokens: int) -> list[str]:
    """Every item's text, indexed by item id: its (already cut) title, year and the leading
    attributes that fit ``attribute_tokens`` tokens (0: all of them)."""
    names = sorted({a for item in attributes for a in item})
    counts = tokenizer([" " + a for a in names], add_special_tokens=False)["input_ids"] \
        if names else []
    tokens = {a: len(ids) for a, ids in zip(names, counts, strict=True)}
    return [""] + [describe(titles[i], years[i], _within(attributes[i], tokens, attribute_tokens))
                   for i in range(1, len(titles))]


@torch.no_grad()
def _mean_states(backbone: Backbone, texts: list[str], batch_size: int, show: bool
                 ) -> np.ndarray:
    """(n, H) the mean last hidden state over each text's tokens, fp32."""
    tokenizer, decoder = backbone.tokenizer, backbone.model.get_decoder()
    device = next(decoder.parameters()).device
    out, side = [], tokenizer.padding_side
    tokenizer.padding_side = "right"  # positions 0.. for every text
    with Progress("reading item texts with the frozen LLM", len(texts), "items",
                  show=show) as progress:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            enc = tokenizer([" " + t for t in chunk], add_special_tokens=False,
                            padding=True, return_tensors="pt").to(device)
            hidden = decoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             use_cache=False).last_hidden_state.float()  # (b, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (b, T, 1)
            out.append(((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy())
            progress.advance(len(chunk))
    tokenizer.padding_side = side
    return np.concatenate(out)


def text_vectors(backbone: Backbone, llm: str, texts: list[str], *, batch_size: int = 32,
                 show_progress: bool = True) -> np.ndarray:
    """(n_items + 1, H) the frozen LLM's vector of each item text (row 0, padding, zero),
    cached by the LLM's name and the texts. Call it on the LLM before LoRA is added."""
    key = sha256_json({"llm": llm, "texts": texts, "version": 1})
    path = cache_home() / "item_vectors" / f"{key[:24]}.safetensors"
    if path.is_file():
        return read_tensors(str(path), "np")["vectors"]
    vectors = np.zeros((len(texts), backbone.hidden_size), dtype=np.float32)
    vectors[1:] = _mean_states(backbone, texts[1:], batch_size, show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"vectors": vectors}, str(tmp), metadata={"llara_kit_version": VERSION})
    return vectors
