"""The generated files of the demo page (docs/demo.md), made while the site builds (docs/hooks.py).

Into the site's ``demo/`` folder, next to the committed ``demo.js`` and ``demo.css``:

- ``model.onnx``: the shipped pretrained ``st-cnn-affine.rts`` exported with the transformer's outputs
  (``stnkit.export.TRANSFORMER_OUTPUTS``: logits, theta, transformed), one file with its weights inside.
  The export takes seconds, so it is cached under ``build/docs-demo/``, keyed by the weights, the
  export code and the torch and onnx versions.
- ``demo.json``: what the page needs to know about the model (input size, the transformer's output
  size and ``align_corners``, for the grid) and the strip of canonical RTS test digits (8-bit pixels).
- ``ort/``: onnxruntime-web's WASM build, copied from ``node_modules`` (``npm ci``, run by ``make setup``):
  the page runs without network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

PRETRAINED = "st-cnn-affine.rts"
DATASET = "rts"
STRIP_SIZE = 12  # digits in the strip: the first of the canonical RTS test set
CACHE_FOLDER = Path("build") / "docs-demo"  # under the repository; build/ is gitignored
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
# The WASM-only script (global `ort`) and what it loads: the runtime's module and its binary.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SETUP_HINT = "run `make setup` (it runs `npm ci`)"


class DemoAssetError(RuntimeError):
    """A file the demo page needs cannot be made; the message says what to run."""


def ort_files(repository: Path) -> dict[str, Path]:
    """``site name under demo/ -> file`` of onnxruntime-web's files; raises if ``npm ci`` did not run."""
    dist = repository / ORT_DIST
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise DemoAssetError(
            f"the demo page needs onnxruntime-web ({', '.join(missing)} not in {dist}): {SETUP_HINT}"
        )
    return {f"ort/{name}": dist / name for name in ORT_FILES}


def _cache_key(weights: Path) -> str:
    """What the exported file depends on: the weights, the export code, torch's and onnx's versions."""
    import stnkit.export

    digest = hashlib.sha256()
    digest.update(weights.read_bytes())
    digest.update(Path(stnkit.export.__file__).read_bytes())
    # Versions without importing onnx (seconds): a cached file then costs no onnx import at all.
    digest.update(" ".join(metadata.version(name) for name in ("torch", "onnx", "onnxscript")).encode())
    return digest.hexdigest()[:16]


def model_file(repository: Path) -> Path:
    """The pretrained model exported with the transformer's outputs, from the cache or made now."""
    from stnkit.models.pretrained import WEIGHTS_DIR, get_pretrained

    entry = get_pretrained(PRETRAINED)
    cache = repository / CACHE_FOLDER
    path = cache / f"{PRETRAINED}-{_cache_key(WEIGHTS_DIR / entry.filename)}.onnx"
    for stale in cache.glob(f"{PRETRAINED}-*.onnx"):  # made from older weights or export code
        if stale != path:
            stale.unlink(missing_ok=True)
    if path.is_file():
        return path
    import onnx
    import torch

    from stnkit.export import TRANSFORMER_OUTPUTS, export_onnx
    from stnkit.models.pretrained import create_pretrained

    cache.mkdir(parents=True, exist_ok=True)
    model = create_pretrained(PRETRAINED).eval()
    example = torch.rand(1, *_input_shape(entry.model_kwargs))
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        # The exporter writes the weights beside the graph (model.onnx.data); the page fetches one
        # file, so load both and save them as one.
        exported = export_onnx(model, example, Path(scratch) / "model.onnx", outputs=TRANSFORMER_OUTPUTS)
        single = Path(scratch) / "single.onnx"
        onnx.save_model(onnx.load(str(exported)), str(single), save_as_external_data=False)
        os.replace(single, path)
    return path


def _input_shape(model_kwargs: Any) -> tuple[int, int, int]:
    height, width = model_kwargs["image_size"]
    return (int(model_kwargs.get("in_channels", 1)), int(height), int(width))


def page_data() -> dict[str, Any]:
    """``demo.json``: the model's sizes and the strip of canonical test digits.

    Without the MNIST files the strip is empty and ``strip_missing`` says how to get them: the page
    still works with drawing, and the site builds on a machine without the data.
    """
    import torch

    from stnkit.data import TEST_SEED, DataNotFoundError, class_names, make_loader
    from stnkit.models.pretrained import create_pretrained, get_pretrained

    entry = get_pretrained(PRETRAINED)
    stn = create_pretrained(PRETRAINED).stn
    channels, height, width = _input_shape(entry.model_kwargs)
    data: dict[str, Any] = {
        "model": PRETRAINED,
        "test_error": entry.test_error,
        "input_shape": [channels, height, width],
        "output_size": list(stn.out_size or (height, width)),
        "align_corners": stn.align_corners,
        "classes": list(class_names(entry.dataset)),
        "strip": [],
    }
    try:
        loader = make_loader(DATASET, split="test", batch_size=STRIP_SIZE, limit=STRIP_SIZE, seed=TEST_SEED)
        images, labels = next(iter(loader))
    except DataNotFoundError as err:
        data["strip_missing"] = f"No test digits: {str(err).splitlines()[0]}"
        return data
    # Every image is a multiple of 1/255 in float32, so the 8-bit values are exact.
    pixels = (images * 255.0).round().to(torch.uint8)  # (STRIP_SIZE, C, H, W)
    data["strip"] = [
        {"index": i, "label": int(label), "pixels": pixel.flatten().tolist()}
        for i, (pixel, label) in enumerate(zip(pixels, labels))
    ]
    return data


def page_json(data: dict[str, Any]) -> str:
    """``demo.json``'s text: one digit per line, so the file stays readable."""
    return json.dumps(data, separators=(",", ":")).replace('{"index"', '\n{"index"')
