"""Prompt templates: the contract, the two special tokens, and the built-ins (movie, game,
artist and a generic item template).

A template renders one sample in either form. Each item is its title followed by one token:
the placeholder (text-only) or the behavioural token (hybrid). The behavioural tokens appear
in the order history, then candidates, which is the order of the item ids returned with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Protocol

from llara_kit.errors import LlaraKitError
from llara_kit.hookspecs import Register, hookimpl

# The special tokens added to the LLM's vocabulary (llm.load_backbone).
PLACEHOLDER = "[PH]"  # after each title in text-only prompts
BEHAVIOUR = "[EMB]"  # after each title in hybrid prompts; replaced by the projected vector


@dataclass(frozen=True)
class Prompt:
    text: str  # ends with "Answer:"; the target follows as " <title>"
    item_ids: list[int]  # one per behavioural token, in order (empty when text-only)
    n_candidates: int = 0  # the last n_candidates item markers (either token) are candidates


class Template(Protocol):
    """What a template plugin's ``factory(**template_options)`` returns."""

    n_phrasings: int  # distinct phrasings; ``phrasing`` p and p + n_phrasings render alike

    def render(self, titles: list[str], history: list[int], candidates: list[int],
               hybrid: bool, phrasing: int = 0) -> Prompt:
        """One sample's prompt. ``titles`` is indexed by item id; ``history`` (oldest first)
        and ``candidates`` are item ids. Every item appears as its title followed by
        ``BEHAVIOUR`` (hybrid) or ``PLACEHOLDER`` (text-only), exactly once; the text ends
        with ``Answer:``; ``Prompt.item_ids`` lists history then candidates for hybrid
        prompts (empty otherwise) and ``n_candidates`` their count. Training draws
        ``phrasing`` per sample; evaluation uses 0."""
        ...


class PromptTemplate:
    """Several phrasings of one task; ``{history}``, ``{candidates}`` and ``{n}`` (the real
    candidate count) are filled in, and every phrasing ends with ``Answer:``."""

    def __init__(self, phrasings: tuple[str, ...]):
        for p in phrasings:
            if not p.endswith("Answer:") or "{history}" not in p or "{candidates}" not in p:
                raise LlaraKitError(
                    f"Template phrasing {p!r} must contain {{history}} and {{candidates}} and "
                    "end with 'Answer:'."
                )
        self.phrasings = phrasings
        self.n_phrasings = len(phrasings)

    def render(self, titles: list[str], history: list[int], candidates: list[int],
               hybrid: bool, phrasing: int = 0) -> Prompt:
        """The prompt for one sample; ``titles`` is indexed by item id."""
        token = BEHAVIOUR if hybrid else PLACEHOLDER

        def items(ids: list[int]) -> str:
            return ", ".join(f"{_clean(titles[i])} {token}" for i in ids)

        text = self.phrasings[phrasing % len(self.phrasings)].format(
            history=items(history), candidates=items(candidates), n=len(candidates)
        )
        return Prompt(text, list(history) + list(candidates) if hybrid else [], len(candidates))


def _clean(title: str) -> str:
    """Titles may not smuggle in the special tokens."""
    return title.replace(BEHAVIOUR, "").replace(PLACEHOLDER, "").strip()


def _phrasings(noun: str, nouns: str, did: str, do: str) -> tuple[str, ...]:
    return (
        f"This user has {did} these {nouns}, in order: {{history}}. Which {noun} will the user "
        f"{do} next? Choose one of these {{n}} {nouns}: {{candidates}}. Answer:",
        f"A user's recent {nouns}, oldest first: {{history}}. From the following {{n}} "
        f"candidates, pick the {noun} this user is most likely to {do} next: "
        f"{{candidates}}. Answer:",
        f"Given that the user {did} {{history}}, predict the next {noun} they will {do}. "
        f"The answer must be one of these {{n}} {nouns}: {{candidates}}. Answer:",
        f"History of {nouns} the user {did}: {{history}}. Candidates ({{n}}): {{candidates}}. "
        f"Name the {noun} the user will {do} next. Answer:",
    )


TEMPLATES = {
    "movie": _phrasings("movie", "movies", "watched", "watch"),
    "game": _phrasings("game", "games", "played", "play"),
    "artist": _phrasings("artist", "artists", "listened to", "listen to"),
    "item": _phrasings("item", "items", "interacted with", "choose"),
}


@hookimpl
def register_templates(register: Register) -> None:
    for name, phrasings in TEMPLATES.items():
        register(name, partial(PromptTemplate, phrasings),
                 description=f"{len(phrasings)} phrasings for {name}s")
