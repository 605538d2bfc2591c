"""The hooks a llara-kit plugin may implement.

Every built-in component is registered through these hooks exactly as a third-party
package would register its own. Each ``register_<kind>s`` hook receives a ``register``
callback; call it once per component::

    @hookimpl
    def register_projectors(register):
        register("lowrank", LowRankProjector, description="d -> r -> H")

``factory`` may also be a ``"module:attribute"`` string, imported when the component is first
built: a plugin whose module imports torch then costs nothing in ``llara-kit list-plugins``.

The docstring of each hook below is its documentation (docs/plugin-hooks.md repeats the
signatures, and a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import click
import pluggy

PROJECT = "llara_kit"  # spec marker, impl marker, plugin manager and entry-point group

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback handed to every ``register_*`` hook."""

    def __call__(self, name: str, factory: Callable[..., Any] | str, *,
                 description: str = "") -> None:
        ...


@hookspec
def register_encoders(register: Register) -> None:
    """Register sequence encoders (pre-trained sequential recommenders).

    ``factory`` is an ``Encoder`` subclass (see docs/encoders.md) built from a config: it
    implements ``encode(seq, lengths) -> (B, d)`` (the user state) and inherits
    ``hidden_size``, ``item_embeddings(ids) -> (..., d)`` and
    ``forward(seq, lengths) -> (B, n_items + 1)`` scores (column 0: the padding id).
    """


@hookspec
def register_projectors(register: Register) -> None:
    """Register projectors that map behavioural vectors into the LLM's input space.

    ``factory(in_dim, out_dim, **options)`` returns an ``nn.Module`` taking
    ``(..., in_dim)`` to ``(..., out_dim)``.
    """


@hookspec
def register_templates(register: Register) -> None:
    """Register prompt templates.

    ``factory(**template_options)`` returns a ``llara_kit.model.prompts.Template``: its
    ``render(titles, history, candidates, hybrid, phrasing)`` gives one sample's ``Prompt``
    in text-only or hybrid form and reports where the behavioural tokens go;
    ``n_phrasings`` counts its phrasings.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register curriculum schedules.

    ``factory(**options)`` returns a callable ``p_hybrid(progress) -> float`` giving the
    probability that a training sample uses the hybrid prompt at ``progress`` in [0, 1].
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register data sets.

    ``factory(**options)`` returns a data-set reader yielding interactions
    (user, item, timestamp) and item titles; the core builds sequences, splits and
    candidate sets from them.
    """


@hookspec
def register_objectives(register: Register) -> None:
    """Register training objectives.

    ``factory(hidden_size, **options)`` returns an ``Objective`` (``llara_kit.model.objectives``):
    an ``nn.Module`` whose parameters train with the LoRA and are saved in the run folder,
    with ``answer(target) -> str | None`` (the text trained after the prompt),
    ``loss(model, batch) -> scalar`` and ``score(model, prompts, candidates,
    base_scores=None) -> (B, C)`` (``model``: the ``LlaraModel``, which carries its tokenizer:
    ``collate(model, prompts, ...)``; ``base_scores``: the encoder's (B, C) scores of the
    candidates, to pass on to ``collate``).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``llara-kit`` command-line interface.

    Use ``@cli.command()`` inside the hook to attach Click commands to the group.
    """
