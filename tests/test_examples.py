"""The runnable examples keep working."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_custom_encoder_example_passes_the_contract():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_encoder.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "meanpool passes the encoder contract" in result.stdout
