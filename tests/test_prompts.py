"""Prompt templates: both forms, real candidate counts, several phrasings."""

import re

import pytest

from llara_kit.errors import LlaraKitError
from llara_kit.model.prompts import BEHAVIOUR, PLACEHOLDER, PromptTemplate
from llara_kit.plugins import build_component

TITLES = ["", "Toy Story", "The Usual Suspects", "Babe", "Heat", "Fargo", "Seven [EMB]"]


@pytest.mark.parametrize("name", ["movie", "game", "artist", "item"])
def test_both_forms_and_counts(name):
    template = build_component("template", name)
    texts = set()
    for phrasing in range(len(template.phrasings)):
        hybrid = template.render(TITLES, [1, 2], [3, 4, 5], hybrid=True, phrasing=phrasing)
        text = template.render(TITLES, [1, 2], [3, 4, 5], hybrid=False, phrasing=phrasing)
        assert hybrid.item_ids == [1, 2, 3, 4, 5] and text.item_ids == []
        assert hybrid.text.count(BEHAVIOUR) == 5 and PLACEHOLDER not in hybrid.text
        assert text.text.count(PLACEHOLDER) == 5 and BEHAVIOUR not in text.text
        assert hybrid.text.replace(BEHAVIOUR, PLACEHOLDER) == text.text
        assert re.findall(r"\d+", text.text) == ["3"]  # the real candidate count, nothing else
        assert "The Usual Suspects [PH], Babe" not in text.text  # history then candidates
        assert text.text.endswith("Answer:")
        texts.add(text.text)
    assert len(texts) == len(template.phrasings) >= 3


def test_titles_cannot_inject_special_tokens():
    template = build_component("template", "movie")
    prompt = template.render(TITLES, [6], [1, 2], hybrid=True)
    assert prompt.text.count(BEHAVIOUR) == 3


def test_bad_phrasing_is_rejected():
    with pytest.raises(LlaraKitError, match="must contain \\{history\\} and \\{candidates\\}"):
        PromptTemplate(("Pick from {candidates}. Answer:",))
