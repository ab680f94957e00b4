"""examples/keras_rts.py: the torch main job's model, and a tiny end-to-end run on the real data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "keras_rts.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("keras_rts", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_has_the_torch_st_cnn_parameter_count(example):
    from stnkit.models.mnist import build_cnn
    from stnkit.models.parts import count_parameters

    assert example.st_cnn().count_params() == count_parameters(build_cnn(transform="affine")) == 204_482


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="one end-to-end run per suite (tensorflow)"
)
def test_a_tiny_run_writes_its_result_and_picture(example, shared_data, tmp_path):
    argv = ["--epochs", "1", "--train-limit", "256", "--test-limit", "100", "--batch-size", "64"]
    assert example.main([*argv, "--data-root", str(shared_data), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "rts_tensorflow.json").read_text())
    assert summary["test_images"] == 100 and 0.0 <= summary["test_error"] <= 1.0
    assert summary["history"][0]["images"] == 256
    assert (tmp_path / "rts_tensorflow.png").stat().st_size > 1000
