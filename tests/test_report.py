"""Seeing a run: evaluation under several orders and draws, the 80-column comparison and
the HTML report, from a tiny trained run."""

from __future__ import annotations

import base64
import json
import re
import sys

import pytest
from click.testing import CliRunner
from helpers import terminal, train_tiny, unstyled

from llara_kit.cli import cli
from llara_kit.run_folder import load_metrics
from llara_kit.storage import read_jsonl


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = train_tiny(tmp_path_factory.mktemp("report"), "head")
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--permutations", "3", "--draws",
                                      "2", "--json"])
    assert result.exit_code == 0, result.output
    return run


def test_evaluate_over_orders_and_draws(run_dir):
    stored = load_metrics(run_dir)["test"]["score"]
    n = stored["samples"]
    assert stored["orders"] == 3 and stored["draws"] == 2
    assert sum(stored["by_position"]["samples"]) == 6 * n  # every layout, every sample
    assert sum(stored["by_position"]["top1_share"]) == pytest.approx(1.0, abs=1e-4)
    spread = stored["spread"]
    assert len(spread["orders"]["HR@1"]) == 2 and len(spread["draws"]["HR@1"]) == 2
    preds = read_jsonl(run_dir / "predictions-test-score.jsonl")
    assert len(preds) == n and all(len(p["ranks"]) == 6 for p in preds)
    hits = sum(r == 0 for p in preds for r in p["ranks"]) / (6 * n)
    assert stored["metrics"]["HR@1"]["value"] == pytest.approx(hits)  # the mean over layouts
    assert "fused" not in load_metrics(run_dir)["test"]  # fusion reads the first draw only
    shown = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--permutations", "2",
                                     "--no-fuse"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert "HR@1 by the target's candidate position" in shown.output
    assert re.search(r"HR@1 over 2 orders: widest range \d\.\d{3}", shown.output)


def test_generation_modes_refuse_orders(run_dir):
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--mode", "generate",
                                      "--permutations", "2"])
    assert result.exit_code == 1
    assert "--permutations and --draws apply to --mode score" in result.output


def test_compare_fits_80_columns(run_dir):
    CliRunner().invoke(cli, ["evaluate", str(run_dir), "--permutations", "3", "--draws", "2"])
    result = CliRunner().invoke(cli, ["compare", str(run_dir), "--against", "sasrec"],
                                env=terminal(80))
    assert result.exit_code == 0, result.output
    output = unstyled(result.output)
    lines = output.splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("±"))]
    assert max(len(line) for line in table) <= 80
    for label in ("popularity", "sasrec alone", "LLaRA head+r+uc"):  # whole, on one line
        assert any(line.lstrip().startswith(label) for line in table), label
    assert re.search(r"0\.\d{3}±\.\d{3}", output)
    assert f"LLaRA head+r+uc: {run_dir}" in output
    assert re.search(r"HR@1 range over 2 draws: popularity \d\.\d{3}, sasrec alone", output)
    rows = json.loads(CliRunner().invoke(cli, ["compare", str(run_dir), "--json"]).output)
    assert all(len(row["HR@1 by draw"]) == 2 for row in rows.values())
    wide = CliRunner().invoke(cli, ["compare", str(run_dir), "--intervals"],
                              env={"COLUMNS": "160"})
    assert re.search(r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]", wide.output)


def test_report_holds_the_figures_and_numbers(run_dir, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"report: {out.resolve()}"
    page = out.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # training, curriculum, comparison chart, HR@1 by position
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'(src|href)="https?:', page)  # opens offline
    stored = load_metrics(run_dir)["test"]["score"]
    assert f"{stored['metrics']['HR@1']['value']:.3f}" in page
    assert json.loads((run_dir / "data.json").read_text())["hash"] in page
    assert "HR@1 spreads" in page and "ΔHR@1 vs sasrec" in page
    assert "sasrec alone" in page and "popularity" in page


def test_report_without_matplotlib_says_how_to_install(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "pip install 'llara-kit[report]'" in result.output
    assert not (tmp_path / "r.html").exists()
