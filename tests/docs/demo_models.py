"""docs/demo_assets.py loaded as a module, and a tiny traffic-sign model registered as pretrained weights.

The demo page's sign model (``gtsrb-st-cnn.gtsrb``) may not be shipped yet; its tests register a
small ``gtsrb-st-cnn`` with random weights under another name (:data:`TINY_SIGNS`), written by
``save_pretrained`` into a temporary weights folder that also holds the shipped files
(test_demo_assets.py, test_demo_browser.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from safetensors import safe_open

from stnkit.models import create_model, pretrained
from stnkit.models.pretrained import PretrainedWeights, save_pretrained

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_SIGNS = "gtsrb-st-cnn.tiny-test"  # not a shipped name: its cached export never evicts the real one
TINY_WEIGHTS_FOLDER = REPO_ROOT / "build" / "docs-demo-tests"  # build/ is gitignored
# No image_size or in_channels: the page takes them from the dataset (GTSRB's 3 x 32 x 32), as the
# builder does by default.
TINY_KWARGS: dict[str, Any] = {
    "num_classes": 43,
    "channels": [8, 8, 8],
    "hidden": [16],
    "loc_channels": [8, 8],
    "loc_features": 16,
    "standardize": True,
}


def load_demo_assets() -> ModuleType:
    """docs/demo_assets.py (build code beside the docs, not a package)."""
    spec = importlib.util.spec_from_file_location("demo_assets", REPO_ROOT / "docs" / "demo_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def tiny_sign_model() -> torch.nn.Module:
    """A small ``gtsrb-st-cnn`` whose weights are random but the same on every call, in eval mode.

    Every parameter moves away from its initial value, the transformer's identity included, so theta
    differs from image to image and the classes are not tied.
    """
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("gtsrb-st-cnn", **TINY_KWARGS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def _tiny_weights_file(model: torch.nn.Module) -> tuple[Path, str]:
    """``model``'s weights file under build/ and its SHA-256, written once and then kept.

    Kept because the page's exported model is cached by the weights file's bytes, and safetensors
    orders the header's metadata differently from one write to the next: a new file each run would
    export the model again (seconds) each run.
    """
    path = TINY_WEIGHTS_FOLDER / f"{TINY_SIGNS}.safetensors"
    state = model.state_dict()
    if path.is_file():
        with safe_open(str(path), framework="pt") as stored:
            same = (stored.metadata() or {}).get("model_kwargs") == json.dumps(TINY_KWARGS, sort_keys=True)
            same = same and set(stored.keys()) == set(state)
            same = same and all(torch.equal(stored.get_tensor(key), value) for key, value in state.items())
        if same:
            return path, hashlib.sha256(path.read_bytes()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    sha256 = save_pretrained(state, path, model="gtsrb-st-cnn", model_kwargs=TINY_KWARGS, dataset="gtsrb")
    return path, sha256


def register_tiny_signs(monkeypatch: pytest.MonkeyPatch, weights: Path) -> torch.nn.Module:
    """Register :func:`tiny_sign_model` as pretrained :data:`TINY_SIGNS` (files in ``weights``); returns it.

    ``weights`` becomes the weights folder; the shipped files are linked into it, so their entries
    still load.
    """
    weights.mkdir(parents=True, exist_ok=True)
    for shipped in pretrained.WEIGHTS_DIR.glob("*.safetensors"):
        (weights / shipped.name).symlink_to(shipped)
    model = tiny_sign_model()
    path, sha256 = _tiny_weights_file(model)
    (weights / path.name).symlink_to(path)
    entry = PretrainedWeights(
        name=TINY_SIGNS,
        model="gtsrb-st-cnn",
        model_kwargs=TINY_KWARGS,
        dataset="gtsrb",
        filename=path.name,
        sha256=sha256,
        test_error=None,
    )
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    monkeypatch.setitem(pretrained.PRETRAINED, TINY_SIGNS, entry)
    return model


def demo_models_with_tiny_signs(demo_assets: ModuleType) -> tuple[Any, Any]:
    """The page's digit model and its sign model with the tiny weights in place of the shipped ones."""
    digits, signs = demo_assets.DEMO_MODELS
    assert (digits.key, signs.key) == ("digits", "signs")
    return digits, dataclasses.replace(signs, pretrained=TINY_SIGNS)
