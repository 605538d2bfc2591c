"""Small data sets and a tiny LLM for fast tests."""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from llara_kit.config import TrainConfig
from llara_kit.data import DataSettings, PreparedData, prepare_data
from llara_kit.model.llm import embedded_gguf
from llara_kit.run import Run
from llara_kit.run_folder import write_config
from llara_kit.storage import staged_dir
from llara_kit.training.train import Trainer, train

# Where tests put their models and batches: the CPU unless LLARA_KIT_TEST_DEVICE says otherwise
# (``LLARA_KIT_TEST_DEVICE=cuda make test`` runs the suite on a GPU).
TEST_DEVICE = os.environ.get("LLARA_KIT_TEST_DEVICE", "cpu")
# A folder with SmolLM2's tokenizer files for the tiny LLM, where the embedded GGUF is not
# installed (the GPU check carries one, examples/benchmarks/gpu_prepare.py).
TEST_TOKENIZER = os.environ.get("LLARA_KIT_TEST_TOKENIZER")
CYCLE_SETTINGS = DataSettings(history=5, candidates=10, split=(0.6, 0.2, 0.2))


def terminal(columns: int) -> dict[str, str]:
    """Environment under which rich prints as to a terminal that wide (styles, no colour)."""
    return {"COLUMNS": str(columns), "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}


def unstyled(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def write_cycle_files(folder: Path, n_items: int = 30, n_users: int = 40, length: int = 12) -> Path:
    """Each user walks items in a cycle (i, i+1, ...): the next item is fully predictable."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        rows += [f"u{u},i{(start + t) % n_items},{t}" for t in range(length)]
    (folder / "interactions.csv").write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    (folder / "items.csv").write_text(
        "item,title\n" + "".join(f"i{i},Item {i}\n" for i in range(n_items)))
    return folder


def cycle_data(tmp_path: Path) -> PreparedData:
    folder = write_cycle_files(tmp_path / "cycle")
    return prepare_data("csv", {"data_dir": folder}, CYCLE_SETTINGS, home=tmp_path / "home")[0]


@functools.cache
def tiny_llm_folder() -> Path:
    """The suite's tiny LLM, built once per session in its temporary folder (treat it as
    read-only): a randomly initialised 2-layer Llama with SmolLM2's tokenizer, read from the
    embedded GGUF file without converting its weights (or from ``TEST_TOKENIZER``), saved as
    a Hugging Face folder."""
    folder = Path(tempfile.gettempdir()) / "tiny-llama"
    if (folder / "config.json").is_file():
        return folder
    if TEST_TOKENIZER:
        tokenizer = AutoTokenizer.from_pretrained(TEST_TOKENIZER)
    else:
        gguf = embedded_gguf("smollm2-135m")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with staged_dir(folder) as tmp:
        LlamaForCausalLM(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def tiny_settings(data_dir: Path, **kw) -> TrainConfig:
    """Settings of a run of the tiny Llama on the cycle data in ``data_dir`` (16 samples);
    ``kw`` overrides settings."""
    s = CYCLE_SETTINGS
    base = dict(dataset="csv", data_dir=str(data_dir), llm=str(tiny_llm_folder()),
                history=s.history, candidates=s.candidates, split=s.split, template="item",
                precision="fp32", batch_size=4, grad_accum=1, max_train_samples=16,
                device=TEST_DEVICE, encoder_options={"hidden_size": 16})
    return TrainConfig(**(base | kw))


def tiny_config(root: Path, n_items: int = 30, **kw) -> TrainConfig:
    """``tiny_settings`` on cycle data of ``n_items`` written under ``root``."""
    return tiny_settings(write_cycle_files(root / "cycle", n_items), **kw)


def train_in_memory(cfg: TrainConfig, run_dir: Path, before=None) -> Run:
    """What ``train`` does, returning the trained run as it is in memory (to compare with the
    run loaded from its folder); ``before(run)`` is called when training is about to begin."""
    trainer = Trainer(cfg, run_dir, show_progress=False)
    write_config(run_dir, cfg, trainer.data.manifest)
    if before is not None:
        before(trainer.assembled)
    trainer.run()
    return trainer.assembled


def train_tiny(root: Path, name: str, n_items: int = 30, **kw) -> Path:
    """A run of ``tiny_config(root, n_items, **kw)`` in ``root / name``."""
    train(tiny_config(root, n_items, **kw), root / name, show_progress=False)
    return root / name


def write_toml(path: Path, settings: dict) -> Path:
    """``settings`` as a TOML config file for ``--config`` (values: JSON scalars, lists and
    one level of tables), at ``path``."""
    def value(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    path.write_text("".join(f"{k} = {value(v)}\n" for k, v in settings.items()))
    return path


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux: from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found += (kids := children.get(todo.pop(), []))
        todo += kids
    return found
