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
    source = Path(value)
    text = source.read_text() if len(value) < 4096 and source.is_file() else value
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[key] = json.loads(text)
    write_json(path, merged)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
