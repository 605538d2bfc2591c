"""llara-kit: LLaRA sequential recommendation as a plugin-based toolkit."""

__version__ = "0.1.0"

from llara_kit.hookspecs import hookimpl
from llara_kit.plugins import get_component, load_plugins, register_plugin


def get_projector(name: str):
    """The projector factory registered as ``name``: ``factory(in_dim, out_dim, **options)``."""
    return get_component("projector", name).factory


def get_schedule(name: str):
    """The schedule factory registered as ``name``: ``factory(**options) -> p_hybrid``."""
    return get_component("schedule", name).factory


__all__ = [
    "__version__",
    "get_component",
    "get_projector",
    "get_schedule",
    "hookimpl",
    "load_plugins",
    "register_plugin",
]
