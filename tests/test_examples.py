"""The runnable examples keep working."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import tiny_llm_folder, write_cycle_files
from transformers import AutoTokenizer

from llara_kit.config import resolve
from llara_kit.training.train import check_components

ROOT = Path(__file__).resolve().parents[1]


def test_custom_encoder_example_passes_the_contract():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_encoder.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "meanpool passes the encoder contract" in result.stdout


def test_example_configs_resolve_to_registered_components():
    paths = sorted((ROOT / "examples" / "configs").glob("*.toml"))
    assert paths
    for path in paths:
        check_components(resolve(config_file=path))  # raises on an unknown name or option
    assert resolve(config_file=paths[0]).schedule_options == {"switch_at": 0.4}


def test_the_training_throughput_benchmark_runs(tmp_path):
    """Its smallest path: the tiny Llama, one timed step of each kind of code."""
    data = write_cycle_files(tmp_path / "cycle", n_items=60, n_users=80, length=30)
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "benchmarks" / "train_throughput.py"),
         "--llm", str(tiny_llm_folder()), "--dataset", "csv", "--data-dir", str(data),
         "--batch-size", "2", "--steps", "1", "--precision", "fp32", "--reference",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["code"] for r in rows] == ["llara-kit", "reference-style"]
    assert all(r["tokens_per_s"] > 0 and 0 <= r["padding_share"] < 1 for r in rows)


def test_the_gpu_check_gets_a_tokenizer_and_data_it_can_carry(tmp_path):
    """gpu_prepare.py writes .gpu/tokenizer (SmolLM2's, as the tiny Llama reads it from the
    embedded GGUF) and .gpu/ml-100k, small enough to carry, and keeps .gpu/ out of git."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "benchmarks" /
                                                 "gpu_prepare.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    gpu = tmp_path / ".gpu"
    assert sorted(p.name for p in (gpu / "ml-100k").iterdir()) == ["ml-100k.inter",
                                                                   "ml-100k.item"]
    assert sum(f.stat().st_size for f in gpu.rglob("*") if f.is_file()) < 8 * 2**20
    assert "/.gpu/" in (tmp_path / ".git" / "info" / "exclude").read_text().split()
    text = "Toy Story (1995) <|behaviour|> Heat (1995)"
    carried = AutoTokenizer.from_pretrained(gpu / "tokenizer")
    embedded = AutoTokenizer.from_pretrained(tiny_llm_folder())
    assert carried(text)["input_ids"] == embedded(text)["input_ids"]
    assert len(carried) == len(embedded)


def test_the_scale_benchmark_runs(tmp_path):
    """Its smallest path: a tiny export prepared and ranked, pre-training steps, the tiny
    LLM's stage, the figures written."""
    out = tmp_path / "scale.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "benchmarks" / "scale.py"), "--interactions",
         "5000", "--items", "300", "--users-ranked", "50", "--pretrain-steps", "2",
         "--sampled-softmax", "10", "--llm", str(tiny_llm_folder()), "--llm-samples", "4",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["users"] == 200 and figures["ranked_users"] == 20  # a tenth of the users
    assert 0 < figures["prepare_peak_gib"] < 2 and figures["rank_seconds"] >= 0
    exact, sampled = figures["pretrain_exact"], figures["pretrain_sampled"]
    assert exact["steps"] == sampled["steps"] == 2  # 512 of the ~3,400 train samples
    assert sampled["estimate_mib"] < exact["estimate_mib"]
    assert figures["llm"]["samples"] == 4 and figures["llm"]["score_seconds_per_sample"] > 0
