"""Click options made from the settings' declarations (``TrainConfig`` and
``DataSettings`` fields), and their values turned back into settings. Imports no torch."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import click

from llara_kit.config import FIELDS, TrainConfig, field_default
from llara_kit.data.settings import NEW_ITEM_ORDERS, PROTOCOLS, SETTINGS, DataSettings

# Which data set (TrainConfig's help) and how its samples are built (DataSettings').
DATA_SOURCE = ("dataset", "data_dir", "data_options")


def setting_option(name: str, default: Any, help: str) -> Any:
    """A Click option for one setting. It defaults to None ("not given"), so that presets
    and TOML files can fill it; dicts take repeatable KEY=VALUE, tuples a comma list."""
    flag = "--" + name.replace("_", "-")
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    help_text = help if default in (None, {}) else f"{help}  [default: {shown}]"
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    if isinstance(default, dict):
        return click.option(flag.removesuffix("s"), name, multiple=True, metavar="KEY=VALUE",
                            help=help_text)
    choices = {"protocol": PROTOCOLS, "new_items_by": NEW_ITEM_ORDERS}
    if name in choices:
        return click.option(flag, name, type=click.Choice(choices[name]), help=help_text)
    declared = str(FIELDS[name].type) if name in FIELDS else ""  # e.g. "float | None"
    kind = next((t for t in (int, float) if isinstance(default, t)
                 or declared.startswith(t.__name__)), str)
    return click.option(flag, name, type=kind, default=None, help=help_text)


def setting_value(name: str, value: Any, default: Any) -> Any:
    """A command-line value in settings form; None and empty multiples mean "not given"."""
    if isinstance(default, dict):
        return key_values(value, f"--{name.replace('_', '-').removesuffix('s')}") or None
    if isinstance(default, tuple) and value is not None:
        parts = [v.strip() for v in value.split(",")]
        if name != "split":
            return tuple(parts)
        try:
            return tuple(float(v) for v in parts)
        except ValueError:
            raise click.BadParameter("give three numbers like 0.8,0.1,0.1.",
                                     param_hint="--split") from None
    return value


def key_values(items: tuple[str, ...], param_hint: str) -> dict[str, Any]:
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}``: values are JSON where they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE.", param_hint=param_hint)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.strip().replace("-", "_")] = value
    return out


def _apply(options: list[Any], func: Any) -> Any:
    for option in reversed(options):
        func = option(func)
    return func


def data_options(func):
    """The options that choose a data set and how its samples are built."""
    return _apply(
        [setting_option(n, field_default(n), FIELDS[n].metadata["help"]) for n in DATA_SOURCE]
        + [setting_option(n, f.default, f.metadata["help"]) for n, f in SETTINGS.items()],
        func)


def data_request(kw: dict) -> tuple[str, dict[str, Any], DataSettings]:
    """(data set, its options, the data settings) given by ``data_options``; pops their keys
    from ``kw``."""
    source = {n: setting_value(n, kw.pop(n), field_default(n)) for n in DATA_SOURCE}
    options = source["data_options"] or {}
    if source["data_dir"] is not None:
        options["data_dir"] = source["data_dir"]
    given = {n: setting_value(n, kw.pop(n), f.default) for n, f in SETTINGS.items()}
    settings = DataSettings(**{n: v for n, v in given.items() if v is not None})
    return source["dataset"] or field_default("dataset"), options, settings


def config_options(func):
    """One option per TrainConfig field (see ``setting_option``)."""
    return _apply([setting_option(f.name, field_default(f.name), f.metadata["help"])
                   for f in fields(TrainConfig)], func)


def overrides(kw: dict[str, Any]) -> dict[str, Any]:
    """CLI values of ``config_options`` in TrainConfig form; None means "not given"."""
    return {name: setting_value(name, value, field_default(name)) for name, value in kw.items()}
