"""Where the LLM comes from: the embedded name, a GGUF file, a folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_config, tiny_llm_folder

from llara_kit import run
from llara_kit.errors import LlaraKitError
from llara_kit.model.llm import embedded_gguf, load_backbone, resolve_llm
from llara_kit.run import new_run


@pytest.mark.slow
def test_a_gguf_file_is_converted_once_into_the_cache():
    gguf = embedded_gguf("smollm2-135m")
    folder = Path(resolve_llm(str(gguf)))
    assert (folder / "config.json").is_file() and folder.name.startswith(gguf.stem)
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert Path(resolve_llm(str(gguf))) == folder  # found in the cache, not converted again
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    embedded = Path(resolve_llm("smollm2-135m"))
    assert (folder / "config.json").read_text() == (embedded / "config.json").read_text()
    assert load_backbone(str(gguf)).hidden_size == 576


def test_a_broken_gguf_file_is_one_sentence(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LlaraKitError, match="Could not convert the GGUF file .*broken.gguf"):
        resolve_llm(str(bad))


def test_a_folder_without_a_model_is_one_sentence(tmp_path):
    with pytest.raises(LlaraKitError, match="neither a .gguf file nor a folder"):
        resolve_llm(str(tmp_path))


def test_training_loads_the_frozen_llm_in_its_precision(tmp_path, monkeypatch):
    """A bf16 run loads the backbone in bf16 (no fp32 copy first); the rows added for the
    special tokens are the fp32 mean row, rounded once."""
    tiny = str(tiny_llm_folder())
    fp32, bf16 = load_backbone(tiny), load_backbone(tiny, torch.bfloat16)
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    added = slice(-2, None)  # the placeholder and behavioural tokens
    rows = bf16.model.get_input_embeddings().weight[added]
    assert torch.allclose(rows.float(), fp32.model.get_input_embeddings().weight[added],
                          rtol=1e-2, atol=1e-3)
    loaded = []
    monkeypatch.setattr(run, "load_backbone",
                        lambda name, dtype: loaded.append(dtype) or load_backbone(name, dtype))
    cfg = tiny_config(tmp_path)
    new_run(cfg, tmp_path / "run", show_progress=False, frozen_dtype=torch.bfloat16)
    assert loaded == [torch.bfloat16]
