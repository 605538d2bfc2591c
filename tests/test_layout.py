"""The package layout shows the stages, and module-level imports run downhill only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "llara_kit"
# Stages from the bottom up; a module may import (at module level) from its own stage or
# below. Functions may import from above (the CLI's commands import what they run).
STAGES = [
    # the base: settings (the data settings are declared beside the data, used by config),
    # storage, errors, plugin host, processes, metrics, text rendering
    {"errors", "version", "storage", "config", "data.settings", "progress", "devices",
     "metrics", "hookspecs", "plugins", "components", "distributed", "render"},
    {"data"},
    {"encoders"},
    {"model"},
    {"run", "run_folder"},
    {"training"},
    {"evaluation"},
    {"serving"},  # the HTTP service over evaluation's Recommender
    {"cli", "options", "contracts", "testing", "scaffold", "__init__", "__main__"},
]


def stage(module: str) -> int:
    """The stage of ``llara_kit.<module>``: of its own entry (``data.settings``), else of its
    package or top-level module."""
    parts = module.split(".")[1:] or ["__init__"]
    for key in (".".join(parts[:2]), parts[0]):
        for i, names in enumerate(STAGES):
            if key in names:
                return i
    raise LookupError(f"{module} is in no stage of tests/test_layout.py")


def module_level_imports(path: Path) -> list[str]:
    """llara_kit modules imported at module level (not inside functions or TYPE_CHECKING)."""
    out = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "llara_kit":
                out += [f"llara_kit.{alias.name}" for alias in node.names]
            elif node.module.startswith("llara_kit."):
                out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("llara_kit.")]
    return out


def test_every_module_has_a_stage():
    for path in ROOT.rglob("*.py"):
        name = ".".join(("llara_kit", *path.relative_to(ROOT).with_suffix("").parts))
        stage(name)  # raises LookupError for a module no stage holds


def test_imports_run_downhill():
    uphill = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(("llara_kit", *path.relative_to(ROOT).with_suffix("").parts))
        for imported in module_level_imports(path):
            if stage(imported) > stage(name):
                uphill.append(f"{name} imports {imported}")
    assert not uphill, uphill


def test_no_module_shadows_the_standard_library():
    import sys

    names = {p.stem for p in ROOT.rglob("*.py")}
    assert not names & set(sys.stdlib_module_names) - {"__init__", "__main__"}
