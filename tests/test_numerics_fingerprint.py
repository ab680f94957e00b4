"""benchmarks/numerics_fingerprint.py: per-kernel digests, and what ``--compare`` says of two records."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "numerics_fingerprint.py"


def _module():
    spec = importlib.util.spec_from_file_location("numerics_fingerprint", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(loss: float, weights: str, ops: dict[str, str] | None) -> dict:
    epoch = {
        "train_loss_hex": loss.hex(),
        "test_loss_hex": (1.0).hex(),
        "train_error": 0.1,
        "test_error": 0.1,
    }
    record = {
        "command": "stnkit train ...",
        "torch": "2.13.0+cpu",
        "weights_sha256": weights,
        "epochs": [epoch],
    }
    return record if ops is None else {**record, "ops": ops}


def test_compare_names_the_kernels_that_differ() -> None:
    fingerprint = _module()
    a = _record(2.5, "aa", {"conv2d": "1", "linear": "2", "sum": "3"})
    b = _record(2.25, "bb", {"conv2d": "1", "linear": "9", "sum": "8"})
    assert fingerprint.first_difference(a, b) == (
        "differ from epoch 1 (training loss 2.5 vs 2.25); kernels that differ: linear, sum"
    )
    older = _record(2.25, "bb", None)  # recorded before the kernels were: the epoch only
    assert fingerprint.first_difference(a, older) == "differ from epoch 1 (training loss 2.5 vs 2.25)"
    assert fingerprint.first_difference(a, _record(2.5, "aa", None)) == "same"
    newer = _record(2.25, "cc", {"conv2d": "1", "linear": "2", "conv2d.aten": "4"})  # one more kernel
    assert fingerprint.first_difference(a, newer).endswith(
        "kernels that differ: none (recorded on one side only: conv2d.aten, sum)"
    )


def test_kernel_digests_are_the_same_in_two_fresh_processes() -> None:
    runs = [
        subprocess.run(
            [sys.executable, str(SCRIPT), "--ops-json", "native"], check=True, capture_output=True, text=True
        )
        for _ in range(2)
    ]
    first, second = (json.loads(run.stdout) for run in runs)
    assert first == second
    assert {"conv2d", "conv2d.grad_weight", "linear", "stnkit.warp", "grid_sample", "adam"} <= first.keys()
    assert all(len(digest) == 16 for digest in first.values())
