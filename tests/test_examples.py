"""The runnable examples keep working."""

import subprocess
import sys
from pathlib import Path

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
