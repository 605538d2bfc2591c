"""Contract checks for components: run them on your own plugin in its tests.

    from llara_kit.contracts import check_encoder
    check_encoder("my-encoder", tmp_path)
"""

from __future__ import annotations

from pathlib import Path

import torch

from llara_kit.encoders import Encoder, load_encoder
from llara_kit.plugins import get_component


def _build(name: str, seed: int, n_items: int, max_len: int) -> Encoder:
    torch.manual_seed(seed)
    cls = get_component("encoder", name).factory
    return cls.from_options(n_items=n_items, max_len=max_len, hidden_size=16).eval()


def check_encoder(name: str, tmp_dir: Path, n_items: int = 50, max_len: int = 6) -> None:
    """Assert the encoder contract (docs/encoders.md) for the registered encoder ``name``."""
    encoder = _build(name, 0, n_items, max_len)
    assert isinstance(encoder, Encoder), f"{name}: factory must build an Encoder subclass"
    assert encoder.hidden_size == 16, f"{name}: hidden_size must follow the config"
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([1, 3, max_len, 2])
    seq = torch.randint(1, n_items + 1, (4, max_len), generator=g)  # (B, L)
    seq[torch.arange(max_len)[None, :] >= lengths[:, None]] = 0

    # shapes and the padding column
    scores = encoder(seq, lengths)
    assert scores.shape == (4, n_items + 1), f"{name}: forward must give (B, n_items + 1)"
    assert torch.isneginf(scores[:, 0]).all(), f"{name}: padding id 0 must score -inf"
    assert encoder.item_embeddings(seq).shape == (4, max_len, 16)
    assert torch.isfinite(scores[:, 1:]).all(), f"{name}: item scores must be finite"

    # padding ignored: whatever sits after a row's length changes nothing
    noisy = torch.where(seq == 0, torch.randint(1, n_items + 1, seq.shape, generator=g), seq)
    assert torch.allclose(encoder(noisy, lengths), scores, atol=1e-5), (
        f"{name}: scores must not depend on positions past each row's length"
    )
    # rows are independent of each other
    assert torch.allclose(encoder(seq[1:2], lengths[1:2]), scores[1:2], atol=1e-5)
    # the history matters
    assert not torch.allclose(encoder(seq.flip(0), lengths.flip(0)), scores)

    # deterministic under a seed, different under another
    again = _build(name, 0, n_items, max_len)
    assert torch.equal(again(seq, lengths), scores), f"{name}: same seed, same encoder"
    other = _build(name, 1, n_items, max_len)
    assert not torch.equal(other(seq, lengths), scores), f"{name}: seed must matter"

    # trainable end to end
    encoder.train()
    encoder(seq, lengths)[:, 1:].logsumexp(-1).sum().backward()
    assert encoder.item_embedding.weight.grad is not None
    encoder.eval()

    # save / load round trip through safetensors + JSON
    encoder.save(tmp_dir)
    assert {p.name for p in Path(tmp_dir).iterdir()} >= {"encoder.safetensors", "encoder.json"}
    loaded = load_encoder(tmp_dir)
    assert type(loaded) is type(encoder) and loaded.config == encoder.config
    assert torch.equal(loaded(seq, lengths), scores), f"{name}: reload must give equal scores"
