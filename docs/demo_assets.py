"""The generated files of the demo page (docs/demo.md), made while the site builds (docs/hooks.py).

The page runs the models of :data:`DEMO_MODELS` whose pretrained weights are shipped
(``stnkit.models.pretrained.PRETRAINED``); one that is not shipped is left out, and with more than one
the page shows a switch between them. Into the site's ``demo/`` folder, next to the committed
``demo.js`` and ``demo.css``:

- ``KEY.onnx`` per model: its pretrained weights exported with the transformer's outputs
  (``stnkit.export.TRANSFORMER_OUTPUTS``: logits, theta, transformed), one file with its weights inside.
  The export takes seconds, so it is cached under ``build/docs-demo/``, keyed by the weights, the
  code of the model and of the export, and the torch and onnx versions.
- ``demo.json``: ``{"models": [...]}``, per model what the page needs to know (input size, the
  transformer's output size and ``align_corners``, for the grid; class names; whether it takes a
  drawing) and its strip of canonical test images (8-bit pixels).
- ``ort/``: onnxruntime-web's WASM build, copied from ``node_modules`` (``npm ci``, run by ``make setup``):
  the page runs without network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_FOLDER = Path("build") / "docs-demo"  # under the repository; build/ is gitignored
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
# The WASM-only script (global `ort`) and what it loads: the runtime's module and its binary.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SETUP_HINT = "run `make setup` (it runs `npm ci`)"


@dataclass(frozen=True)
class DemoModel:
    """A model the demo page can run, and how the page shows it."""

    key: str  # its button's id and its file's name under demo/ (KEY.onnx)
    label: str  # its button's text in the switch
    pretrained: str  # a name of stnkit.models.pretrained.PRETRAINED; not shipped: left out
    strip_dataset: str  # the canonical test set the strip comes from (stnkit.data.make_loader)
    strip_size: int  # images in the strip: the first of that test set
    strip_noun: str  # what a strip image is called on the page ("digit", "sign")
    strip_caption: str  # the line above the strip
    drawing: bool  # the input square takes a drawing (mouse or finger), white on black
    top_classes: int | None  # bars: the most likely few, most likely first; None: all, in label order
    intro: str  # the page's sentence about what it shows; {output} is the transformer's output size


DEMO_MODELS = (
    DemoModel(
        key="digits",
        label="Digits (RTS MNIST)",
        pretrained="st-cnn-affine.rts",
        strip_dataset="rts",
        strip_size=12,
        strip_noun="digit",
        strip_caption="Canonical RTS test digits (rotated, scaled and translated MNIST):",
        drawing=True,
        top_classes=None,
        intro=(
            "Draw a digit in the big square (mouse or finger) or pick a distorted test digit below, and "
            "see the pretrained ST-CNN's spatial transformer at work: its sampling grid over your input "
            "(where each pixel of its output is read from), the {output} image it hands to the "
            "classifier, and the classifier's probabilities."
        ),
    ),
    DemoModel(
        key="signs",
        label="Traffic signs (GTSRB)",
        pretrained="gtsrb-st-cnn.gtsrb",
        strip_dataset="gtsrb",
        strip_size=12,
        strip_noun="sign",
        strip_caption="Canonical GTSRB test images (photographs of German traffic signs):",
        drawing=False,
        top_classes=5,
        intro=(
            "Pick a traffic sign below and see the pretrained GTSRB ST-CNN's spatial transformer at "
            "work: its sampling grid over the photograph (where each pixel of its output is read "
            "from), the {output} image it hands to the classifier, and its five most likely classes."
        ),
    ),
)


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


def shipped_models(models: Sequence[DemoModel] = DEMO_MODELS) -> list[DemoModel]:
    """The models of ``models`` whose pretrained weights have a registry entry, in order."""
    from stnkit.models.pretrained import list_pretrained

    shipped = set(list_pretrained())
    return [model for model in models if model.pretrained in shipped]


def _cache_key(weights: Path) -> str:
    """What the exported file depends on: the weights, the code that builds, runs and exports the
    model (stnkit's export, models, nn and geometry), torch's and onnx's versions."""
    import stnkit

    package = Path(stnkit.__file__).parent
    digest = hashlib.sha256()
    digest.update(weights.read_bytes())
    sources = [package / "export.py"]
    for folder in ("models", "nn", "geometry"):
        sources += sorted((package / folder).rglob("*.py")) + sorted((package / folder).rglob("*.cpp"))
    for source in sources:
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    # Versions without importing onnx (seconds): a cached file then costs no onnx import at all.
    digest.update(" ".join(metadata.version(name) for name in ("torch", "onnx", "onnxscript")).encode())
    return digest.hexdigest()[:16]


def model_file(model: DemoModel, cache: Path) -> Path:
    """``model``'s pretrained weights exported with the transformer's outputs, from ``cache`` or made now."""
    from stnkit.models.pretrained import get_pretrained

    entry = get_pretrained(model.pretrained)
    path = cache / f"{model.pretrained}-{_cache_key(entry.path)}.onnx"
    for stale in cache.glob(f"{model.pretrained}-*.onnx"):  # made from older weights or export code
        if stale != path:
            stale.unlink(missing_ok=True)
    if path.is_file():
        return path
    import onnx
    import torch

    from stnkit.export import TRANSFORMER_OUTPUTS, export_onnx
    from stnkit.models.pretrained import create_pretrained

    cache.mkdir(parents=True, exist_ok=True)
    network = create_pretrained(model.pretrained).eval()
    example = torch.rand(1, *_input_shape(entry))
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        # The exporter writes the weights beside the graph (model.onnx.data); the page fetches one
        # file, so load both and save them as one.
        exported = export_onnx(network, example, Path(scratch) / "model.onnx", outputs=TRANSFORMER_OUTPUTS)
        single = Path(scratch) / "single.onnx"
        onnx.save_model(onnx.load(str(exported)), str(single), save_as_external_data=False)
        os.replace(single, path)
    return path


def _input_shape(entry: Any) -> tuple[int, int, int]:
    """(C, H, W) of a pretrained model's input: its dataset's images, unless its builder arguments say."""
    from stnkit.data import dataset_info

    info = dataset_info(entry.dataset)
    size = entry.model_kwargs.get("image_size", info.image_size)
    height, width = (size, size) if isinstance(size, int) else size
    return (int(entry.model_kwargs.get("in_channels", info.in_channels)), int(height), int(width))


def page_data(model: DemoModel) -> dict[str, Any]:
    """One model's entry of ``demo.json``: its sizes, how the page shows it, its strip of test images.

    Without the dataset's files the strip is empty and ``strip_missing`` says how to get them: a
    model that takes drawings still works, and the site builds on a machine without the data.
    """
    import torch

    from stnkit.data import TEST_SEED, DataNotFoundError, class_names, make_loader
    from stnkit.models.pretrained import create_pretrained, get_pretrained

    entry = get_pretrained(model.pretrained)
    stn = create_pretrained(model.pretrained).stn
    channels, height, width = _input_shape(entry)
    out_height, out_width = stn.out_size or (height, width)
    data: dict[str, Any] = {
        "key": model.key,
        "label": model.label,
        "model": model.pretrained,
        "onnx": f"{model.key}.onnx",
        "test_error": entry.test_error,
        "input_shape": [channels, height, width],
        "output_size": [out_height, out_width],
        "align_corners": stn.align_corners,
        "classes": list(class_names(entry.dataset)),
        "top_classes": model.top_classes,
        "drawing": model.drawing,
        "intro": model.intro.format(output=f"{out_height}x{out_width}"),
        "strip_noun": model.strip_noun,
        "strip_caption": model.strip_caption,
        "strip": [],
    }
    size = model.strip_size
    try:
        loader = make_loader(model.strip_dataset, split="test", batch_size=size, limit=size, seed=TEST_SEED)
        images, labels = next(iter(loader))
    except DataNotFoundError as err:
        data["strip_missing"] = f"No test {model.strip_noun}s: {str(err).splitlines()[0]}"
        return data
    # Every image is a multiple of 1/255 in float32, so the 8-bit values are exact.
    pixels = (images * 255.0).round().to(torch.uint8)  # (size, C, H, W)
    data["strip"] = [
        {"index": i, "label": int(label), "pixels": pixel.flatten().tolist()}
        for i, (pixel, label) in enumerate(zip(pixels, labels))
    ]
    return data


def page_json(models: Sequence[dict[str, Any]]) -> str:
    """``demo.json``'s text, ``{"models": [...]}``: one strip image per line, so the file stays readable."""
    return json.dumps({"models": list(models)}, separators=(",", ":")).replace('{"index"', '\n{"index"')


def site_files(
    repository: Path, *, models: Sequence[DemoModel] = DEMO_MODELS, cache: Path | None = None
) -> dict[str, Path | str]:
    """``site name under demo/ -> file or text`` of every generated file of the demo page.

    Args:
        repository: the repository's root (``node_modules``, the default cache).
        models: the candidates; those without shipped weights are left out, and so is one that
            takes no drawing when its strip's dataset is missing (it would have no input).
        cache: where exported models are kept; default ``build/docs-demo`` under ``repository``.

    Raises:
        DemoAssetError: no ``npm ci``, no model to show, or shipped weights that do not load.
    """
    from stnkit.models.pretrained import PretrainedWeightsError

    files: dict[str, Path | str] = dict(ort_files(repository))
    pages = []
    for model in shipped_models(models):
        try:
            data = page_data(model)
            if not (model.drawing or data["strip"]):
                continue
            files[data["onnx"]] = model_file(model, cache or repository / CACHE_FOLDER)
        except PretrainedWeightsError as err:
            raise DemoAssetError(f"the demo page's model {model.key!r}: {err}") from err
        pages.append(data)
    if not pages:
        names = ", ".join(model.pretrained for model in models)
        raise DemoAssetError(f"the demo page has no model: none of {names} is shipped")
    files["demo.json"] = page_json(pages)
    return files
