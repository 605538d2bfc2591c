"""The encoder contract over every registered encoder, and pre-training that really learns."""

from __future__ import annotations

import json

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
    build_encoder,
    pretrain_encoder,
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
