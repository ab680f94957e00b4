"""The README's Keras example runs on every backend (tests/docs skips it: it runs in the torch process)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

README = Path(__file__).resolve().parents[3] / "README.md"


def keras_section_code() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## In Keras 3", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the README's Keras section should hold one python block"
    return blocks[0]


def test_the_readme_keras_example_runs():
    namespace: dict[str, object] = {}
    exec(compile(keras_section_code(), str(README), "exec"), namespace)
    y, x = keras.ops.convert_to_numpy(namespace["y"]), namespace["x"]
    assert y.shape == (8, 28, 28, 1)
    assert tuple(namespace["params"].shape) == (8, 6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(namespace["out"]), x)  # identity params
