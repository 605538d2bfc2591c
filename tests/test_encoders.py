"""The encoder contract over every registered encoder, and pre-training that really learns."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from helpers import cycle_data

from llara_kit import load_plugins
from llara_kit.cli import cli
from llara_kit.contracts import check_encoder
from llara_kit.encoders import load_encoder
from llara_kit.encoders.pretrain import (
    PretrainSettings,
    _check_settings,
    build_encoder,
    pretrain_encoder,
    pretrain_memory,
    stored_encoders,
)
from llara_kit.errors import LlaraKitError
from llara_kit.storage import sha256_file

ENCODERS = load_plugins().registries["encoder"].names()


def test_builtin_encoders_are_registered():
    assert {"sasrec", "gru4rec", "caser"} <= set(ENCODERS)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_contract(name, tmp_path):
    check_encoder(name, tmp_path)


FAST = PretrainSettings(epochs=40, patience=40, lr=1e-2, batch_size=64)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "caser"])
def test_pretraining_learns_a_sequential_pattern(name, tmp_path):
    data = cycle_data(tmp_path)
    result = pretrain_encoder(name, data, {"hidden_size": 32}, FAST, home=tmp_path,
                              show_progress=False)
    test = result.report["test"]
    assert test["HR@1"]["value"] >= 0.8  # chance is 0.1 with 10 candidates
    assert test["HR@1"]["low"] <= test["HR@1"]["value"] <= test["HR@1"]["high"]
    log = [json.loads(line) for line in (result.path / "train_log.jsonl").open()]
    assert log[-1]["loss"] < log[0]["loss"] and len(log) == result.report["epochs_run"]


def test_pretrained_encoder_is_stored_and_reused(tmp_path):
    data = cycle_data(tmp_path)
    settings = PretrainSettings(epochs=3, batch_size=64)
    first = pretrain_encoder("gru4rec", data, None, settings, home=tmp_path, show_progress=False)
    weights = first.path / "encoder.safetensors"
    digest = sha256_file(weights)
    again = pretrain_encoder("gru4rec", data, None, settings, home=tmp_path, show_progress=False)
    assert again.reused and again.path == first.path and sha256_file(weights) == digest
    assert again.report["test"] == first.report["test"]
    assert again.report["data_hash"] == data.hash
    other = pretrain_encoder("gru4rec", data, None, PretrainSettings(epochs=2, batch_size=64),
                             home=tmp_path, show_progress=False)
    assert not other.reused and other.path != first.path
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in first.path.iterdir())


def test_same_seed_same_encoder(tmp_path):
    data = cycle_data(tmp_path)
    settings = PretrainSettings(epochs=2, batch_size=64)
    a = pretrain_encoder("sasrec", data, None, settings, home=tmp_path / "a", show_progress=False)
    b = pretrain_encoder("sasrec", data, None, settings, home=tmp_path / "b", show_progress=False)
    for (ka, va), (kb, vb) in zip(a.encoder.state_dict().items(),
                                  b.encoder.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_bad_encoder_settings(tmp_path):
    data = cycle_data(tmp_path)
    with pytest.raises(LlaraKitError, match="has no setting 'hiden_size'; its settings are"):
        build_encoder("sasrec", data, {"hiden_size": 8})
    with pytest.raises(LlaraKitError, match="has no setting 'hiden_size'; its settings are"):
        stored_encoders("sasrec", data, {"hiden_size": 8})  # what train looks up first
    with pytest.raises(LlaraKitError, match="dropout=1.5"):
        build_encoder("gru4rec", data, {"dropout": 1.5})
    with pytest.raises(LlaraKitError, match="lr=0"):
        PretrainSettings(lr=0)
    with pytest.raises(LlaraKitError, match="holds no saved encoder"):
        load_encoder(tmp_path)


def test_cli_pretrain_prints_metrics_and_reuses(tmp_path):
    data = cycle_data(tmp_path)
    folder = tmp_path / "cycle"
    args = ["pretrain", "--encoder", "gru4rec", "--dataset", "csv", "--data-dir", str(folder),
            "--history", "5", "--candidates", "10", "--split", "0.6,0.2,0.2", "--epochs", "2",
            "--batch-size", "64"]
    runner = CliRunner()
    env = {"COLUMNS": "200", "LLARA_KIT_HOME": str(tmp_path / "home")}
    first = runner.invoke(cli, args, env=env)
    assert first.exit_code == 0, first.output
    assert "HR@1" in first.output and "full NDCG@10" in first.output
    assert "popularity" in first.output and "trained in" in first.output
    second = runner.invoke(cli, [*args, "--json"], env=env)
    report = json.loads(second.output)
    assert report["reused"] is True and report["data_hash"] == data.hash
    assert set(report["test"]) == {"HR@1", "HR@5", "NDCG@5", "NDCG@10", "MRR",
                                   "full HR@10", "full NDCG@10"}


def test_sampled_softmax_over_every_item_is_the_exact_loss(tmp_path):
    data = cycle_data(tmp_path)
    torch.manual_seed(0)
    encoder = build_encoder("sasrec", data, {"hidden_size": 16}).eval()
    train = data.splits["train"]
    seq, lengths, targets = (torch.from_numpy(a[:32]) for a in
                             (train.history, train.lengths, train.targets))
    every = torch.arange(1, data.n_items + 1)  # each target among them: left out of its row
    exact = encoder.pretrain_loss(seq, lengths, targets)
    assert torch.allclose(encoder.sampled_loss(seq, lengths, targets, every), exact, atol=1e-6)
    few = encoder.sampled_loss(seq, lengths, targets, every[:4])
    assert torch.isfinite(few) and few < exact  # fewer competitors, a smaller loss


def test_pretraining_with_a_sampled_softmax_learns(tmp_path):
    data = cycle_data(tmp_path)
    sampled = pretrain_encoder("sasrec", data, {"hidden_size": 32},
                               replace(FAST, sampled_softmax=5), home=tmp_path,
                               show_progress=False)
    assert sampled.report["test"]["HR@1"]["value"] >= 0.8  # chance is 0.1
    assert sampled.report["settings"]["sampled_softmax"] == 5
    exact = pretrain_memory(sampled.encoder, FAST)
    assert sampled.report["memory_estimate_gib"] * 2**30 < exact


def test_pretraining_refuses_what_cannot_run(tmp_path, monkeypatch):
    data = cycle_data(tmp_path)
    monkeypatch.setattr("llara_kit.encoders.pretrain.free_memory", lambda device: 2**16)
    with pytest.raises(LlaraKitError, match=r"Pre-training sasrec with the exact softmax over "
                       r"30 items and batches of 64 needs about 0\.3 GiB but 0\.0 GiB is free "
                       r"on cpu; pass `llara-kit pretrain --sampled-softmax 1000`"):
        pretrain_encoder("sasrec", data, None, FAST, home=tmp_path, show_progress=False)
    with pytest.raises(LlaraKitError, match="sampled_softmax=-1 must be >= 0"):
        PretrainSettings(sampled_softmax=-1)

    class OwnLoss(load_plugins().registries["encoder"].get("sasrec").factory):
        def pretrain_loss(self, seq, lengths, targets):
            return super().pretrain_loss(seq, lengths, targets)

    with pytest.raises(LlaraKitError, match="brings its own pre-training loss, which "
                       "--sampled-softmax does not replace"):
        _check_settings("own", OwnLoss.from_options(n_items=30), replace(FAST, sampled_softmax=5),
                        torch.device("cpu"))
