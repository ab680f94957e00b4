"""Portable numerics (stnkit.numerics): the pins reach torch, come too late with a clear error, and
the CLI applies and records them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.cpu_features import cpu_has

from stnkit.cli import main
from stnkit.numerics import PORTABLE_ENVIRONMENT, numerics_in_use, use_numerics


def _run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, without any pins this process's environment may have."""
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )


_REPORT = """
import json, os, torch
from stnkit.numerics import numerics_in_use, use_numerics, PORTABLE_ENVIRONMENT
before = numerics_in_use()
use_numerics({mode!r})
print(json.dumps({{
    "before": before,
    "after": numerics_in_use(),
    "capability": torch.backends.cpu.get_cpu_capability(),
    "environment": {{k: os.environ.get(k) for k in PORTABLE_ENVIRONMENT}},
}}))
"""


@pytest.mark.skipif(not cpu_has("avx2"), reason="the CPU has no AVX2")
def test_portable_pins_the_environment_and_caps_aten_at_avx2() -> None:
    result = _run_fresh(_REPORT.format(mode="portable"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["before"] == "native"
    assert report["after"] == "portable"
    assert report["capability"] == "AVX2"
    assert report["environment"] == PORTABLE_ENVIRONMENT


def test_native_leaves_the_environment_alone() -> None:
    result = _run_fresh(_REPORT.format(mode="native"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["after"] == "native"
    assert report["environment"] == dict.fromkeys(PORTABLE_ENVIRONMENT)


@pytest.mark.skipif(not cpu_has("avx512f"), reason="the CPU has no AVX-512: nothing to cap")
def test_portable_after_the_first_computation_is_refused() -> None:
    code = "import torch; torch.ones(8).sum()\nfrom stnkit.numerics import use_numerics\nuse_numerics('portable')"
    result = _run_fresh(code)
    assert result.returncode != 0
    assert "NumericsError: portable numerics must be chosen before torch's first computation" in result.stderr
    assert "AVX512" in result.stderr


def test_unknown_numerics_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="numerics must be one of portable, native; got 'fast'"):
        use_numerics("fast")  # type: ignore[arg-type]


def test_train_records_its_numerics_per_epoch(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "mnist", "--model", "fcn", "--epochs", "2", "--limit", "64"]
    args += ["--test-limit", "32", "--batch-size", "32", "--no-progress", "--snapshot-images", "2"]
    assert main([*args, "--data-root", str(shared_data), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert config["numerics"] == "native"  # the default
    assert [r["numerics"] for r in records] == [numerics_in_use()] * 2


@pytest.mark.skipif(not cpu_has("avx2"), reason="the CPU has no AVX2")
def test_train_with_portable_numerics_in_a_fresh_process(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "run"
    code = (
        "from stnkit.cli import main; raise SystemExit(main(['train', '--dataset', 'mnist', '--model', 'fcn', "
        "'--epochs', '1', '--limit', '64', '--test-limit', '32', '--batch-size', '32', '--no-progress', "
        f"'--snapshot-images', '2', '--numerics', 'portable', '--data-root', {str(shared_data)!r}, "
        f"'--out', {str(out)!r}]))"
    )
    result = _run_fresh(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["numerics"] == "portable"
    assert json.loads((out / "metrics.jsonl").read_text())["numerics"] == "portable"


@pytest.mark.skipif(not cpu_has("avx512f"), reason="the CPU has no AVX-512: nothing to cap")
def test_train_with_portable_numerics_after_a_computation_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.ones(8).sum()  # this process computes with torch's native kernels (if no test did before)
    pins_before = {k: os.environ.get(k) for k in PORTABLE_ENVIRONMENT}
    assert main(["train", "--dataset", "mnist", "--numerics", "portable", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stnkit train: error: portable numerics must be chosen before torch's first")
    assert err.rstrip().endswith("or leave out --numerics portable") and err.count("\n") == 1
    assert {k: os.environ.get(k) for k in PORTABLE_ENVIRONMENT} == pins_before  # refused: nothing left behind


def test_train_refuses_unknown_numerics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--numerics", "fast"]) == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err
