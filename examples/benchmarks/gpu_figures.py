"""Merge one figure into a GPU-check part's JSON file, atomically (examples/benchmarks/gpu_check.sh
calls it after every step, so a timeout keeps what finished).

    python examples/benchmarks/gpu_figures.py FIGURES.json KEY VALUE

VALUE is a JSON file (its content is stored) or a JSON text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llara_kit.storage import write_json


def main(figures: str, key: str, value: str) -> None:
    path = Path(figures)
    try:
        figure = json.loads(value)
    except ValueError:  # not JSON text: a file holding it
        figure = json.loads(Path(value).read_text())
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[key] = figure
    write_json(path, merged)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
