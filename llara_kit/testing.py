"""Testing llara-kit plugins: a pytest plugin (registered through the ``pytest11`` entry
point, so installing llara-kit makes it available) with contract checks for every kind.

In a plugin package's tests::

    from llara_kit.testing import check_encoder

    def test_contract(llara_plugin, tmp_path):
        llara_plugin(my_plugin_module)        # registered for this test only
        check_encoder("my-encoder", tmp_path)

The checks import torch when called, not when pytest starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llara_kit.plugins import KINDS

CHECKS = tuple(f"check_{kind}" for kind in KINDS)


def __getattr__(name: str) -> Any:
    """``check_<kind>`` from llara_kit.contracts, imported on first use."""
    if name in CHECKS:
        from llara_kit import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module 'llara_kit.testing' has no attribute {name!r}")


@pytest.fixture
def llara_plugin() -> Iterator[Callable[..., Any]]:
    """``llara_plugin(plugin, name=...)`` registers a plugin object (a module or any object
    with hook functions) for the current test and removes it afterwards; returns its
    ``PluginInfo`` and raises when the plugin is broken. A plugin already loaded through its
    installed entry point is kept as it is."""
    from llara_kit.plugins import load_plugins, register_plugin

    added: list[str] = []

    def register(plugin: object, name: str | None = None) -> Any:
        host = load_plugins()
        if host.pm.is_registered(plugin):
            return host.plugins[host.pm.get_name(plugin)]
        name = name or getattr(plugin, "__name__", None) or f"test-plugin-{len(added)}"
        added.append(name)
        return register_plugin(plugin, name)

    yield register
    for name in added:
        load_plugins().remove_plugin(name)
