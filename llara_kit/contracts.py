"""Contract checks for components: run them on your own plugin in its tests.

    from llara_kit.contracts import check_encoder
    check_encoder("my-encoder", tmp_path)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from llara_kit.config import field_default
from llara_kit.encoders import Encoder, load_encoder
from llara_kit.plugins import get_component


def _build(name: str, seed: int, n_items: int, max_len: int) -> Encoder:
    torch.manual_seed(seed)
    cls = get_component("encoder", name).factory
    return cls.from_options(n_items=n_items, max_len=max_len, hidden_size=16).eval()


def check_encoder(name: str, tmp_dir: Path, n_items: int = 50, max_len: int = 6) -> None:
    """Assert the encoder contract (docs/encoders.md) for the registered encoder ``name``."""
    encoder = _build(name, 0, n_items, max_len)
    assert isinstance(encoder, Encoder), f"{name}: factory must build an Encoder subclass"
    assert encoder.hidden_size == 16, f"{name}: hidden_size must follow the config"
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([1, 3, max_len, 2])
    seq = torch.randint(1, n_items + 1, (4, max_len), generator=g)  # (B, L)
    seq[torch.arange(max_len)[None, :] >= lengths[:, None]] = 0

    # shapes and the padding column
    scores = encoder(seq, lengths)
    assert scores.shape == (4, n_items + 1), f"{name}: forward must give (B, n_items + 1)"
    assert torch.isneginf(scores[:, 0]).all(), f"{name}: padding id 0 must score -inf"
    assert encoder.item_embeddings(seq).shape == (4, max_len, 16)
    assert torch.isfinite(scores[:, 1:]).all(), f"{name}: item scores must be finite"

    # the listed items' scores are forward's columns (what ranking on candidates reads)
    listed = torch.randint(0, n_items + 1, (4, 5), generator=g)  # (B, K), padding included
    assert torch.allclose(encoder.score_items(seq, lengths, listed), scores.gather(1, listed),
                          atol=1e-5), (
        f"{name}: score_items must equal forward's columns; override both or neither")

    # padding ignored: whatever sits after a row's length changes nothing
    noisy = torch.where(seq == 0, torch.randint(1, n_items + 1, seq.shape, generator=g), seq)
    assert torch.allclose(encoder(noisy, lengths), scores, atol=1e-5), (
        f"{name}: scores must not depend on positions past each row's length"
    )
    # rows are independent of each other
    assert torch.allclose(encoder(seq[1:2], lengths[1:2]), scores[1:2], atol=1e-5)
    # the history matters
    assert not torch.allclose(encoder(seq.flip(0), lengths.flip(0)), scores)

    # deterministic under a seed, different under another
    again = _build(name, 0, n_items, max_len)
    assert torch.equal(again(seq, lengths), scores), f"{name}: same seed, same encoder"
    other = _build(name, 1, n_items, max_len)
    assert not torch.equal(other(seq, lengths), scores), f"{name}: seed must matter"

    # pre-training: a finite scalar loss that trains the item table, seeded by torch's RNG
    encoder.train()
    targets = torch.randint(1, n_items + 1, (4,), generator=g)
    torch.manual_seed(2)
    loss = encoder.pretrain_loss(seq, lengths, targets)
    assert loss.shape == () and torch.isfinite(loss), f"{name}: pretrain_loss must be a scalar"
    loss.backward()
    assert encoder.item_embedding.weight.grad is not None, f"{name}: loss must train the items"
    torch.manual_seed(2)
    assert torch.equal(encoder.pretrain_loss(seq, lengths, targets), loss.detach()), (
        f"{name}: pretrain_loss must be reproducible under torch.manual_seed")
    encoder.eval()

    # save / load round trip through safetensors + JSON
    encoder.save(tmp_dir)
    assert {p.name for p in Path(tmp_dir).iterdir()} >= {"encoder.safetensors", "encoder.json"}
    loaded = load_encoder(tmp_dir)
    assert type(loaded) is type(encoder) and loaded.config == encoder.config
    assert torch.equal(loaded(seq, lengths), scores), f"{name}: reload must give equal scores"


def check_projector(name: str, in_dim: int = 8, out_dim: int = 12, **options) -> None:
    """Assert the projector contract: ``factory(in_dim, out_dim, **options)`` is a module
    mapping (..., d) -> (..., H), trainable, seeded."""
    factory = get_component("projector", name).factory
    torch.manual_seed(0)
    projector = factory(in_dim, out_dim, **options)
    assert isinstance(projector, torch.nn.Module), f"{name}: factory must build an nn.Module"
    x = torch.randn(3, 5, in_dim)  # (B, L, d)
    y = projector(x)
    assert y.shape == (3, 5, out_dim), f"{name}: (B, L, {in_dim}) must map to (B, L, {out_dim})"
    assert projector(x[0]).shape == (5, out_dim), f"{name}: any leading shape must work"
    assert torch.allclose(projector(x[1:2]), y[1:2], atol=1e-5), f"{name}: rows independent"
    y.sum().backward()
    assert any(p.grad is not None for p in projector.parameters()), f"{name}: not trainable"
    torch.manual_seed(0)
    assert torch.equal(factory(in_dim, out_dim, **options)(x), y.detach()), (
        f"{name}: the same seed must build the same projector")


def check_schedule(name: str, **options) -> None:
    """Assert the schedule contract: ``factory(**options)`` gives ``p(progress)`` in [0, 1]
    for progress in [0, 1], the same on every call."""
    p = get_component("schedule", name).factory(**options)
    assert callable(p), f"{name}: factory must return a callable p(progress)"
    grid = [i / 20 for i in range(21)]
    values = [p(x) for x in grid]
    assert all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values), (
        f"{name}: p(progress) must be a number in [0, 1], got {values}")
    assert values == [p(x) for x in grid], f"{name}: p must not change between calls"


def check_template(name: str, **options) -> None:
    """Assert the template contract: ``factory(**options).render(titles, history,
    candidates, hybrid, phrasing)`` gives a ``Prompt`` ending in ``Answer:`` that names every
    item once with one marker each: the behavioural token (hybrid, item ids history then
    candidates) or the placeholder (text-only); ``n_phrasings`` phrasings, repeating after
    that."""
    from llara_kit.model.lengths import phrasings_of
    from llara_kit.model.prompts import BEHAVIOUR, PLACEHOLDER, Prompt

    template = get_component("template", name).factory(**options)
    titles = ["", "Alpha One", "Beta Two", "Gamma Three", "Delta Four", "Epsilon Five"]
    history, candidates = [1, 2], [3, 4, 5]
    n = phrasings_of(template)
    for phrasing in range(n):
        for hybrid in (True, False):
            prompt = template.render(titles, history, candidates, hybrid, phrasing)
            again = template.render(titles, history, candidates, hybrid, phrasing + n)
            assert again == prompt, f"{name}: phrasing {phrasing + n} must repeat {phrasing}"
            assert isinstance(prompt, Prompt), f"{name}: render must return a Prompt"
            assert prompt.text.endswith("Answer:"), f"{name}: a prompt ends with 'Answer:'"
            for i in history + candidates:
                assert prompt.text.count(titles[i]) == 1, f"{name}: {titles[i]!r} once"
            marker, other = (BEHAVIOUR, PLACEHOLDER) if hybrid else (PLACEHOLDER, BEHAVIOUR)
            assert prompt.text.count(marker) == 5 and other not in prompt.text, (
                f"{name}: one {marker} per item (hybrid={hybrid})")
            assert prompt.item_ids == (history + candidates if hybrid else [])
            assert prompt.n_candidates == len(candidates)


def check_dataset(name: str, data_dir: Path, **options) -> None:
    """Assert the data-set contract on files in ``data_dir``: ``factory(data_dir=...,
    **options).read()`` gives ``RawData`` whose interactions are (user, item, time) strings
    and a number, whose titles are non-empty, and whose every interaction names a titled
    item; the sources it names exist."""
    from llara_kit.data.raw import RawData

    raw = get_component("dataset", name).factory(data_dir=data_dir, **options).read()
    assert isinstance(raw, RawData), f"{name}: read() must return RawData"
    assert raw.interactions, f"{name}: no interactions read"
    for user, item, ts in raw.interactions:
        assert isinstance(user, str) and isinstance(item, str), f"{name}: ids are strings"
        assert isinstance(ts, (int, float)), f"{name}: timestamps are numbers"
        assert item in raw.titles, f"{name}: interaction with untitled item {item!r}"
    assert all(isinstance(t, str) and t for t in raw.titles.values()), f"{name}: empty title"
    assert raw.sources and all(Path(p).is_file() for p in raw.sources), (
        f"{name}: sources must name the files read (they key the cache)")


def check_objective(name: str, llm: str = field_default("llm"), **options) -> None:
    """Assert the objective contract (docs/plugin-hooks.md) on the LLM ``llm`` (a name, id or
    folder; tests may pass a tiny one): ``factory(hidden_size, **options)`` is an
    ``Objective`` whose ``answer`` gives text or None, whose ``loss`` on a hybrid and a
    text-only sample is a finite scalar that trains its own weights (if it has any) and the
    projector, whose ``score`` gives finite (B, C) scores on the CPU, the same on every call
    and after a save/load of its weights through safetensors."""
    from safetensors.torch import load_file, save_file

    from llara_kit.model.batching import collate
    from llara_kit.model.objectives import Objective
    from llara_kit.run import untuned_model

    factory = get_component("objective", name).factory
    encoder = _build("sasrec", 0, n_items=5, max_len=4)
    model = untuned_model(llm, encoder, torch.nn.Identity(), torch.nn.Identity())  # set below
    hidden = model.hidden_size
    torch.manual_seed(0)
    objective = factory(hidden, **options)
    assert isinstance(objective, Objective), f"{name}: factory must build an Objective"
    model.projector = projector = get_component("projector", "mlp").factory(16, hidden)
    model.objective = objective
    template = get_component("template", "item").factory()
    titles = ["", "Alpha One", "Beta Two", "Gamma Three", "Delta Four", "Epsilon Five"]
    prompts = [template.render(titles, [1, 2], [3, 4, 5], hybrid) for hybrid in (True, False)]
    candidates = [[titles[i] for i in (3, 4, 5)]] * 2
    answers = [objective.answer(titles[4]) for _ in prompts]
    assert all(a is None or isinstance(a, str) for a in answers), f"{name}: answer: str | None"

    model.train()
    loss = model(collate(model, prompts, answers, target_pos=[1, 1]))
    assert loss.shape == () and torch.isfinite(loss), f"{name}: loss must be a finite scalar"
    loss.backward()
    trainable = [*objective.parameters(), *projector.parameters()]
    assert all(p.grad is not None for p in trainable), (
        f"{name}: the loss must reach the objective's own weights and the projector")

    model.eval()
    scores = objective.score(model, prompts, candidates)
    assert scores.shape == (2, 3) and scores.device.type == "cpu", f"{name}: scores are (B, C)"
    assert torch.isfinite(scores).all(), f"{name}: scores must be finite"
    assert torch.equal(objective.score(model, prompts, candidates), scores), (
        f"{name}: scoring must be deterministic")

    state = {k: v.detach().contiguous() for k, v in objective.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        save_file(state, f"{tmp}/objective.safetensors")
        torch.manual_seed(1)
        reloaded = factory(hidden, **options)
        reloaded.load_state_dict(load_file(f"{tmp}/objective.safetensors"))
    model.objective = reloaded
    assert torch.allclose(reloaded.score(model, prompts, candidates), scores,
                          atol=1e-5), f"{name}: reloaded weights must score alike"
