"""pyproject.toml declares every third-party package llara_kit imports, and nothing unused."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from llara_kit.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Imported only where a declared extra or the test runner is present.
OUTSIDE_CORE = {"matplotlib": "report extra", "fastapi": "serve extra", "uvicorn": "serve extra",
                "starlette": "serve extra (fastapi's)", "pydantic": "serve extra (fastapi's)",
                "pytest": "the pytest plugin (llara_kit.testing)",
                "deepspeed": "once accelerate imported it for a DeepSpeed launch "
                             "(distributed._is_deepspeed)"}
# Declared for a library that imports them on llara_kit's behalf.
INDIRECT = {"gguf": "transformers reads --llm GGUF files with it"}


def imported_distributions() -> dict[str, str]:
    """Distribution name (lower case) -> a module of llara_kit that imports it."""
    owners = metadata.packages_distributions()
    found = {}
    for path in sorted((ROOT / "llara_kit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "llara_kit" or top in OUTSIDE_CORE:
                    continue
                for dist in owners.get(top, [top]):
                    found.setdefault(dist.lower(), str(path.relative_to(ROOT)))
    return found


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower()
            for spec in project["dependencies"]}


def test_every_imported_package_is_declared_and_every_declared_one_imported():
    used, wanted = imported_distributions(), declared()
    assert not set(used) - wanted, {d: used[d] for d in set(used) - wanted}
    assert not wanted - set(used) - set(INDIRECT), wanted - set(used) - set(INDIRECT)
