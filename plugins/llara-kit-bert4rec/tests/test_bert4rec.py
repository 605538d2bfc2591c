"""bert4rec keeps the encoder contract, learns with its cloze loss, and trains with llara-kit."""

from __future__ import annotations

import llara_kit_bert4rec
import pytest
import torch
from llara_kit_bert4rec.model import BERT4Rec

from llara_kit.data import DataSettings, prepare_data
from llara_kit.encoders.pretrain import PretrainSettings, pretrain_encoder
from llara_kit.errors import LlaraKitError
from llara_kit.testing import check_encoder


@pytest.fixture
def bert4rec(llara_plugin):
    return llara_plugin(llara_kit_bert4rec)  # already registered when installed: kept


def test_keeps_the_encoder_contract(bert4rec, tmp_path):
    check_encoder("bert4rec", tmp_path)


def test_cloze_loss_hides_the_last_item_and_only_real_items(bert4rec):
    torch.manual_seed(0)
    encoder = BERT4Rec.from_options(n_items=30, max_len=5, hidden_size=16, mask_prob=0.5)
    seq = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])  # (B, L), left-aligned
    lengths, targets = torch.tensor([3, 5]), torch.tensor([9, 10])
    seen = []
    encoder._states = lambda full, n, hidden: seen.append((full, n, hidden)) or torch.zeros(
        *full.shape, 16, requires_grad=True)
    encoder.pretrain_loss(seq, lengths, targets)
    full, n, hidden = seen[0]
    assert full.tolist() == [[1, 2, 3, 9, 0, 0], [4, 5, 6, 7, 8, 10]]  # target appended
    assert n.tolist() == [4, 6] and hidden[0, 3] and hidden[1, 5]  # the target is always hidden
    assert not hidden[0, 4:].any()  # padding is never a prediction


def test_bad_mask_prob_is_one_sentence():
    with pytest.raises(LlaraKitError, match="mask_prob=1.5 must lie in"):
        BERT4Rec.from_options(n_items=5, mask_prob=1.5)


def test_pretraining_learns_a_predictable_sequence(bert4rec, tmp_path):
    """Users walk items in a cycle: after pre-training the next item ranks first."""
    folder = tmp_path / "cycle"
    folder.mkdir()
    rows = [f"u{u},i{(u + t) % 30},{t}" for u in range(40) for t in range(12)]
    (folder / "interactions.csv").write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    (folder / "items.csv").write_text("item,title\n" + "".join(f"i{i},Item {i}\n"
                                                              for i in range(30)))
    data, _ = prepare_data("csv", {"data_dir": folder},
                           DataSettings(history=5, candidates=10, split=(0.6, 0.2, 0.2)),
                           home=tmp_path / "home")
    settings = PretrainSettings(epochs=30, patience=30, lr=5e-3, batch_size=64)
    result = pretrain_encoder("bert4rec", data, {"hidden_size": 32}, settings,
                              home=tmp_path / "home", show_progress=False)
    assert result.report["test"]["HR@1"]["value"] > 0.9
    assert result.report["encoder"] == "bert4rec"
