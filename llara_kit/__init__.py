"""llara-kit: LLaRA sequential recommendation as a plugin-based toolkit."""

from llara_kit.hookspecs import hookimpl
from llara_kit.plugins import get_component, load_plugins, register_plugin
from llara_kit.version import VERSION as __version__


def get_projector(name: str):
    """The projector factory registered as ``name``: ``factory(in_dim, out_dim, **options)``."""
    return get_component("projector", name).factory


def get_schedule(name: str):
    """The schedule factory registered as ``name``: ``factory(**options) -> p_hybrid``."""
    return get_component("schedule", name).factory


def __getattr__(name: str):
    """``llara_kit.Recommender`` without importing the model stack at ``import llara_kit``."""
    if name == "Recommender":
        from llara_kit.evaluation.recommend import Recommender

        return Recommender
    raise AttributeError(f"module 'llara_kit' has no attribute {name!r}")


__all__ = [
    "Recommender",
    "__version__",
    "get_component",
    "get_projector",
    "get_schedule",
    "hookimpl",
    "load_plugins",
    "register_plugin",
]
