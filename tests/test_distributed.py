"""Data-parallel runs: two processes (torchrun, gloo on the CPU) against one process with the
same global batch, for training and for evaluation."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import CYCLE_SETTINGS, tiny_llm_folder, write_cycle_files
from safetensors.torch import load_file

from llara_kit.cli import cli
from llara_kit.config import TrainConfig
from llara_kit.devices import pick_device
from llara_kit.distributed import command, fold_small, shard
from llara_kit.errors import LlaraKitError
from llara_kit.storage import read_jsonl
from llara_kit.train import Trainer


def test_shards_cover_the_batch_in_order():
    idx = np.arange(7)
    parts = [shard(idx, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    assert np.array_equal(np.concatenate(parts), idx)


def test_small_batches_fold_into_the_one_before():
    batches = [np.arange(4), np.arange(4, 8), np.arange(8, 9)]
    assert [len(b) for b in fold_small(batches, 2)] == [4, 5]
    assert [len(b) for b in fold_small(batches, 1)] == [4, 4, 1]


def test_device_names_are_checked():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(LlaraKitError, match="device='meta' is not supported"):
        pick_device("meta")
    with pytest.raises(LlaraKitError, match="device='gpu0' is not a device"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(LlaraKitError, match="no CUDA GPU is visible"):
            pick_device("cuda:0")


def test_the_plan_counts_folded_micro_batches(tmp_path):
    """17 samples in micro-batches of 4 over 2 ranks: the single last sample joins the batch
    before it, and the plan's count of micro-batches says so."""
    s = CYCLE_SETTINGS
    cfg = TrainConfig(dataset="csv", data_dir=str(write_cycle_files(tmp_path / "cycle")),
                      llm=str(tiny_llm_folder(tmp_path / "tiny")), history=s.history,
                      candidates=s.candidates, split=s.split, template="item",
                      batch_size=4, grad_accum=1, max_train_samples=17,
                      encoder_options={"hidden_size": 16})
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    assert trainer.plan.micro_per_epoch == len(trainer._epoch(0)[0]) == 5
    trainer.world = 2  # as if launched on two processes (only the plan reads it here)
    trainer._epoch.cache_clear()
    trainer.plan = trainer._make_plan()
    batches = trainer._epoch(0)[0]
    assert trainer.plan.micro_per_epoch == len(batches) == 4
    assert sorted(map(len, batches)) == [4, 4, 4, 5]


def test_launched_train_needs_one_out_folder():
    result = CliRunner().invoke(cli, ["train"], env={"WORLD_SIZE": "2"})
    assert result.exit_code == 2 and "needs --out" in result.output


def _llara_kit(processes: int, *args: str) -> None:
    """``python -m llara_kit ARGS`` in one process, or under torchrun in several."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command(processes) + list(args), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same settings trained by two processes and by one (two-process run first, so its
    rank 0 pre-trains the encoder while rank 1 waits)."""
    root = tmp_path_factory.mktemp("ddp")
    s = CYCLE_SETTINGS
    # 18 samples in micro-batches of 4, two per step: three steps, one of them with the
    # micro-batch of 2 that gives each rank a single sample.
    settings = {
        "dataset": "csv", "data_dir": str(write_cycle_files(root / "cycle")),
        "llm": str(tiny_llm_folder(root / "tiny")), "history": s.history,
        "candidates": s.candidates, "split": list(s.split), "template": "item",
        "precision": "fp32", "batch_size": 4, "grad_accum": 2, "max_train_samples": 18,
        "lora_dropout": 0.0, "lr": 1e-2, "encoder_options": {"hidden_size": 16},
    }
    toml = root / "config.toml"
    toml.write_text("\n".join(f"{k} = {_toml(v)}" for k, v in settings.items()) + "\n")
    for processes, name in ((2, "two"), (1, "one")):
        _llara_kit(processes, "train", "--config", str(toml), "--out", str(root / name))
        _llara_kit(processes, "evaluate", str(root / name), "--no-fuse")
    return root / "one", root / "two"


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def test_two_processes_train_like_one(runs):
    one, two = runs
    log1, log2 = read_jsonl(one / "train_log.jsonl"), read_jsonl(two / "train_log.jsonl")
    assert [e["samples"] for e in log2] == [e["samples"] for e in log1]
    assert sum(e["samples"] for e in log1) == 18 and len(log1) == 3
    assert [e["hybrid_share"] for e in log2] == [e["hybrid_share"] for e in log1]
    assert [e["tokens"] for e in log2] == [e["tokens"] for e in log1]
    # the same loss of the same global micro-batches, up to summation order
    np.testing.assert_allclose([e["loss"] for e in log2], [e["loss"] for e in log1], rtol=1e-4)
    assert json.loads((two / "summary.json").read_text())["processes"] == 2
    for file in ("adapter/adapter_model.safetensors", "projector.safetensors",
                 "objective.safetensors"):
        w1, w2 = load_file(one / file), load_file(two / file)
        assert w1.keys() == w2.keys()
        # Adam divides by the gradient's size, so rounding differences in near-zero gradients
        # move weights by up to ~1e-5 here; the score head's bias shifts every candidate's
        # score alike, so its exact gradient is 0 and Adam turns rounding into steps ~lr.
        for key in w1.keys() - {"head.bias"}:
            torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-4, msg=key)


def test_two_processes_evaluate_every_user_once(runs):
    one, two = runs
    rows1 = read_jsonl(one / "predictions-test-score.jsonl")
    rows2 = read_jsonl(two / "predictions-test-score.jsonl")
    assert [r["user"] for r in rows2] == [r["user"] for r in rows1]  # all users, in order
    s1, s2 = (np.array([r["scores"] for r in rows]) for rows in (rows1, rows2))
    # up to the head's bias (see above), which shifts a user's scores alike
    np.testing.assert_allclose(s2 - s2.mean(1, keepdims=True), s1 - s1.mean(1, keepdims=True),
                               atol=1e-3)
    assert [r["hit"] for r in rows2] == [r["hit"] for r in rows1]
