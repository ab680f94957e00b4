"""``python -m stnkit`` is the command line (what ``torchrun -m stnkit`` runs)."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_stnkit_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stnkit", "models"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "st-cnn-affine" in result.stdout.split()


def test_python_dash_m_stnkit_rejects_unknown_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stnkit", "fly"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
