"""FSDP2 and DeepSpeed ZeRO-3 through ``llara-kit train`` on one CUDA GPU, launched by
accelerate with the example configs: a run interrupted after a checkpoint, resumed with
``--resume``. One process shards nothing, but it runs every code path the engines add
(sharded parameters, the trainer's precision in DeepSpeed's config, the trainable weights
gathered for checkpoints, checkpoint weights loaded before ``prepare``). The GPU check runs
these; without CUDA they are skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import CYCLE_SETTINGS, descendants, tiny_llm_folder, write_cycle_files, write_toml
from safetensors.torch import load_file

from llara_kit.storage import read_jsonl

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="sharded engines run on CUDA GPUs (the GPU check)")]

EXAMPLES = Path(__file__).parents[1] / "examples" / "accelerate"
CONFIGS = {"fsdp2": "fsdp-7b.yaml", "deepspeed-zero3": "deepspeed-zero3-7b.yaml"}


@pytest.mark.parametrize("engine", CONFIGS)
def test_a_sharded_engine_trains_stops_and_resumes_on_one_gpu(tmp_path, engine):
    if engine.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed")
    s = CYCLE_SETTINGS
    config = write_toml(tmp_path / "config.toml", {
        "dataset": "csv", "data_dir": str(write_cycle_files(tmp_path / "cycle")),
        "llm": str(tiny_llm_folder()), "history": s.history, "candidates": s.candidates,
        "split": list(s.split), "template": "item", "batch_size": 4, "grad_accum": 1,
        "max_train_samples": 64, "device": "cuda", "encoder_options": {"hidden_size": 16}})
    out = tmp_path / "run"
    args = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(EXAMPLES / CONFIGS[engine]), "--num_processes", "1", "--main_process_port", "0",
            "-m", "llara_kit", "train", "--config", str(config), "--checkpoint-every", "4",
            "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state, deadline = out / "checkpoint" / "state.json", time.monotonic() + 120
    while not state.is_file():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.01)
    for pid in descendants(proc.pid):  # the rank (not the launcher): Ctrl-C in training
        if b"llara_kit" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGINT)
    stopped = proc.communicate(timeout=120)[1]
    assert proc.returncode != 0 and "checkpoint saved" in stopped, stopped[-3000:]
    assert not (out / "summary.json").exists()
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "AdamW starts afresh" in done.stderr  # a sharded checkpoint holds no moments
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bf16"] and summary["device"].startswith("cuda")
    log = read_jsonl(out / "train_log.jsonl")
    assert [e["step"] for e in log] == list(range(16))  # 64 samples in batches of 4
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)  # the trainable weights only
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # trained
    assert load_file(out / "projector.safetensors")
