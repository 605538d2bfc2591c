"""Where the LLM comes from: the embedded name, a GGUF file, a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from llara_kit.errors import LlaraKitError
from llara_kit.model.llm import embedded_gguf, load_backbone, resolve_llm


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
