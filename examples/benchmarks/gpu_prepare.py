"""Put into .gpu/ what the GPU check needs and the GPU machine lacks (docs/scaling.md, "The GPU
check"): MovieLens-100K's two atomic files (from the recbole package) and SmolLM2's tokenizer
(read from the embedded GGUF file, for the tests' tiny Llama). Run from the project's root
after set-up; the GGUF's two halves come from ../shared/tools/gpu-weights.sh.

    .venv/bin/python examples/benchmarks/gpu_prepare.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import AutoTokenizer

from llara_kit.data.sources import _recbole_example_dir
from llara_kit.model.llm import embedded_gguf

GPU = Path(".gpu")


def main() -> None:
    exclude = Path(".git/info/exclude")  # .gpu/ travels, ignored by git
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if not exclude.is_file() or "/.gpu/" not in exclude.read_text().split():
        with exclude.open("a") as f:
            f.write("/.gpu/\n")
    data = GPU / "ml-100k"
    data.mkdir(parents=True, exist_ok=True)
    for suffix in ("inter", "item"):
        shutil.copy2(_recbole_example_dir("ml-100k") / f"ml-100k.{suffix}", data)
    gguf = embedded_gguf("smollm2-135m")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(
        GPU / "tokenizer")
    for folder in (data, GPU / "tokenizer"):
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
