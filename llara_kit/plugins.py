"""Plugin manager, registries of components, and the plugin listing.

Built-in plugins (``DEFAULT_PLUGINS``) are registered first, then third-party plugins
from the ``llara_kit`` entry-point group. A built-in that fails is a bug and raises; a
third-party plugin that fails to import or validate is reported as broken and skipped.

A factory may be registered as a ``"module:attribute"`` string, imported the first time it is
used: listing plugins then imports no torch (``llara-kit --help`` answers in well under 1 s).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from llara_kit import hookspecs
from llara_kit.errors import PluginError, UnknownComponentError
from llara_kit.version import VERSION

# The kinds of component, declared here only: each has a ``register_<kind>s`` hook, a
# registry, a TrainConfig field of the same name, a ``check_<kind>`` contract and a
# ``new-plugin --kind``; every other list of kinds is derived from this one.
KINDS = ("encoder", "projector", "template", "schedule", "dataset", "objective")

DEFAULT_PLUGINS = (
    "llara_kit.components",  # the torch components: encoders, projectors, objectives
    "llara_kit.model.schedules",
    "llara_kit.data.sources",
    "llara_kit.data.public",
    "llara_kit.model.prompts",
)

# Set to 1 to skip third-party plugins (the test suite does; so can a user debugging one).
DISABLE_AUTOLOAD_ENV = "LLARA_KIT_DISABLE_PLUGIN_AUTOLOAD"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # "package.module:Class"
_SPEC_ARGS = {
    name: list(inspect.signature(func).parameters)
    for name, func in vars(hookspecs).items()
    if name.startswith("register_")
}


@dataclass(frozen=True)
class Component:
    """One registered part: its kind, name, factory (or ``"module:attribute"`` naming it) and
    the plugin that provided it."""

    kind: str
    name: str
    target: Callable[..., Any] | str
    plugin: str
    description: str = ""

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory; a ``"module:attribute"`` target is imported here, on first use."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        try:
            found: Any = importlib.import_module(module)
            for part in attr.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"Plugin {self.plugin!r} registered the {self.kind} {self.name!r} as "
                f"{self.target!r}, which cannot be imported ({type(exc).__name__}: {exc}); "
                "reinstall the plugin or fix its register call."
            ) from None
        if not callable(found):
            raise PluginError(
                f"Plugin {self.plugin!r} registered the {self.kind} {self.name!r} as "
                f"{self.target!r}, which is not callable; name a class or function."
            )
        return found


@dataclass
class PluginInfo:
    """What ``list-plugins`` shows for one plugin."""

    name: str
    version: str
    source: str  # "built-in" or the distribution that installed it
    error: str | None = None
    components: dict[str, list[str]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "broken"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "components": self.components,
        }


class Registry:
    """Components of one kind, looked up by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Component] = {}

    def add(self, component: Component) -> None:
        existing = self._items.get(component.name)
        if existing is not None:
            raise PluginError(
                f"Plugins {existing.plugin!r} and {component.plugin!r} both provide the "
                f"{self.kind} {component.name!r}; uninstall one of them or rename its {self.kind}."
            )
        self._items[component.name] = component

    def get(self, name: str) -> Component:
        try:
            return self._items[name]
        except KeyError:
            available = ", ".join(self.names()) or "none"
            raise UnknownComponentError(
                f"Unknown {self.kind} {name!r}. Available: {available}."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def drop_plugin(self, plugin: str) -> None:
        self._items = {n: c for n, c in self._items.items() if c.plugin != plugin}

    def __contains__(self, name: object) -> bool:
        return name in self._items


class PluginHost:
    """A pluggy manager with the built-ins and, optionally, entry-point plugins loaded."""

    def __init__(
        self,
        builtins: tuple[str, ...] = DEFAULT_PLUGINS,
        *,
        entry_points: bool | None = None,
    ):
        if entry_points is None:
            entry_points = os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0")
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        for module_name in builtins:
            info = PluginInfo(module_name, VERSION, "built-in")
            self.add_plugin(importlib.import_module(module_name), info)
            if info.error:
                raise PluginError(f"Built-in plugin {module_name!r} is broken: {info.error}")
        if entry_points:
            self._load_entry_points()

    def add_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Validate and register ``plugin``, then collect its components into ``info``."""
        self.plugins[info.name] = info
        try:
            self._validate(plugin, info.name)
            self.pm.register(plugin, name=info.name)
        except (PluginError, ValueError, pluggy.PluginValidationError) as exc:
            info.error = str(exc)
            return
        for kind in KINDS:
            register = self._register_callback(info, kind)
            self._call_plugin_hook(info, f"register_{kind}s", register=register)

    def remove_plugin(self, name: str) -> None:
        """Unregister plugin ``name`` and drop its components (tests, notebooks)."""
        self.plugins.pop(name, None)
        for registry in self.registries.values():
            registry.drop_plugin(name)
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)

    def add_commands(self, cli: Any) -> None:
        """Let every healthy plugin attach its CLI commands to ``cli``."""
        for info in list(self.plugins.values()):
            if info.error is None:
                self._call_plugin_hook(info, "register_commands", cli=cli)

    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.error]

    def _validate(self, plugin: object, name: str) -> None:
        for attr in dir(plugin):
            if self.pm.parse_hookimpl_opts(plugin, attr) is None:
                continue
            if attr not in _SPEC_ARGS:
                known = ", ".join(sorted(_SPEC_ARGS))
                raise PluginError(
                    f"Plugin {name!r} implements unknown hook {attr!r}; known hooks: {known}."
                )
            args = list(inspect.signature(getattr(plugin, attr)).parameters)
            unknown = [a for a in args if a not in _SPEC_ARGS[attr]]
            if unknown:
                raise PluginError(
                    f"Plugin {name!r} hook {attr!r} takes unknown argument(s) "
                    f"{', '.join(unknown)}; it may take only: {', '.join(_SPEC_ARGS[attr])}."
                )

    def _register_callback(self, info: PluginInfo, kind: str) -> hookspecs.Register:
        def register(name: str, factory: Callable[..., Any], *, description: str = "") -> None:
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise PluginError(
                    f"Plugin {info.name!r} registered the {kind} name {name!r}; names are "
                    "lower-case letters, digits, '.', '_' or '-'."
                )
            lazy = isinstance(factory, str) and _TARGET_RE.match(factory)
            if not callable(factory) and not lazy:
                raise PluginError(
                    f"Plugin {info.name!r} registered {kind} {name!r} with a factory that is "
                    "not callable; pass a class or function, or 'module:attribute'."
                )
            self.registries[kind].add(Component(kind, name, factory, info.name, description))
            info.components.setdefault(kind, []).append(name)

        return register

    def _call_plugin_hook(self, info: PluginInfo, hook_name: str, **kwargs: Any) -> None:
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            if impl.plugin_name != info.name:
                continue
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:  # a faulty plugin must not take the toolkit down
                self._mark_broken(info, f"{hook_name} failed: {exc}")

    def _mark_broken(self, info: PluginInfo, error: str) -> None:
        info.error = error
        info.components = {}
        for registry in self.registries.values():
            registry.drop_plugin(info.name)
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)

    def _load_entry_points(self) -> None:
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=hookspecs.PROJECT):
            if (ep.name, ep.value) in seen:  # editable installs can list a dist twice
                continue
            seen.add((ep.name, ep.value))
            dist = ep.dist
            info = PluginInfo(
                ep.name,
                dist.version if dist else "unknown",
                dist.metadata["Name"] if dist else "unknown",
            )
            if ep.name in self.plugins:
                info.name = f"{ep.name} ({info.source})"
                self.plugins[info.name] = info
                info.error = f"its name {ep.name!r} is already taken by another plugin"
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.plugins[info.name] = info
                info.error = f"could not be imported ({type(exc).__name__}: {exc})"
                continue
            self.add_plugin(plugin, info)


_host: PluginHost | None = None


def load_plugins() -> PluginHost:
    """The process-wide plugin host, created on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def get_component(kind: str, name: str) -> Component:
    """Look up a component by kind and name; unknown names raise a listing error."""
    if kind not in KINDS:
        available = ", ".join(KINDS)
        raise UnknownComponentError(f"Unknown component kind {kind!r}. Available: {available}.")
    return load_plugins().registries[kind].get(name)


def build_component(kind: str, name: str, *args: Any, **options: Any) -> Any:
    """Call the factory of ``kind`` ``name`` after checking the option names against it."""
    factory = get_component(kind, name).factory
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return factory(*args, **options)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        accepted = [n for n, p in params.items() if p.kind in named]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise UnknownComponentError(
                f"The {kind} {name!r} has no option {unknown[0]!r}; its options are: "
                f"{', '.join(accepted[len(args):]) or 'none'}."
            )
    return factory(*args, **options)


def register_plugin(plugin: object, name: str) -> PluginInfo:
    """Register a plugin object at run time (scripts, notebooks); raises if it is broken."""
    info = PluginInfo(name, "local", "registered at run time")
    load_plugins().add_plugin(plugin, info)
    if info.error:
        raise PluginError(f"Plugin {name!r} is broken: {info.error}")
    return info
