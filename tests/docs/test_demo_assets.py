"""docs/demo_assets.py, the demo page's build step: its refusals, its fallback and its models, without a site build."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tests.docs.demo_models import (
    TINY_SIGNS,
    demo_models_with_tiny_signs,
    load_demo_assets,
    register_tiny_signs,
)


@pytest.fixture(scope="module")
def demo_assets() -> ModuleType:
    return load_demo_assets()


def test_without_npm_ci_the_build_says_to_run_the_setup(demo_assets: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(demo_assets.DemoAssetError, match=r"run `make setup` \(it runs `npm ci`\)") as err:
        demo_assets.ort_files(tmp_path)
    assert "\n" not in str(err.value)


def test_the_ort_files_are_found_after_npm_ci(demo_assets: ModuleType, tmp_path: Path) -> None:
    dist = tmp_path / demo_assets.ORT_DIST
    dist.mkdir(parents=True)
    for name in demo_assets.ORT_FILES:
        (dist / name).write_text("x")
    found = demo_assets.ort_files(tmp_path)
    assert sorted(found) == sorted(f"ort/{name}" for name in demo_assets.ORT_FILES)
    assert all(path.parent == dist for path in found.values())


def test_without_the_data_the_strip_is_empty_and_says_why(
    demo_assets: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STNKIT_DATA", str(tmp_path / "no-data"))
    data = demo_assets.page_data(demo_assets.DEMO_MODELS[0])
    assert data["strip"] == []
    assert "stnkit data download mnist" in data["strip_missing"]
    # The page still gets what it needs to run the model on a drawing.
    assert data["input_shape"] == [1, 42, 42] and data["output_size"] == [28, 28]
    assert data["align_corners"] is False and data["drawing"] is True


def test_a_model_whose_weights_are_not_shipped_is_left_out(
    demo_assets: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    digits, signs = demo_models_with_tiny_signs(demo_assets)
    assert demo_assets.shipped_models([digits, signs]) == [digits]
    register_tiny_signs(monkeypatch, tmp_path / "weights")
    assert demo_assets.shipped_models([digits, signs]) == [digits, signs]
    assert demo_assets.shipped_models([signs, digits]) == [signs, digits]  # in the declared order


def test_the_sign_model_page_data(
    demo_assets: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path
) -> None:
    from stnkit.data import TEST_SEED, class_names, make_loader

    register_tiny_signs(monkeypatch, tmp_path / "weights")
    _, signs = demo_models_with_tiny_signs(demo_assets)
    data = demo_assets.page_data(signs)
    assert (data["key"], data["model"], data["onnx"]) == ("signs", TINY_SIGNS, "signs.onnx")
    assert data["input_shape"] == [3, 32, 32] and data["output_size"] == [32, 32]
    assert data["classes"] == list(class_names("gtsrb")) and len(data["classes"]) == 43
    assert data["top_classes"] == 5 and data["drawing"] is False
    assert "32x32 image" in data["intro"]
    # The strip: the first images of the canonical GTSRB test set, RGB, channel by channel.
    images, labels = next(iter(make_loader("gtsrb", split="test", batch_size=12, limit=12, seed=TEST_SEED)))
    assert [image["label"] for image in data["strip"]] == labels.tolist()
    pixels = torch.tensor([image["pixels"] for image in data["strip"]], dtype=torch.float32) / 255.0
    assert torch.equal(pixels, images.flatten(1))  # (12, 3 * 32 * 32)


def _node_modules(demo_assets: ModuleType, repository: Path) -> None:
    dist = repository / demo_assets.ORT_DIST
    dist.mkdir(parents=True)
    for name in demo_assets.ORT_FILES:
        (dist / name).write_text("x")


def test_the_site_files_of_both_models_and_without_the_sign_images(
    demo_assets: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path
) -> None:
    register_tiny_signs(monkeypatch, tmp_path / "weights")
    models = demo_models_with_tiny_signs(demo_assets)
    repository = tmp_path / "repository"
    _node_modules(demo_assets, repository)
    cache = Path(__file__).resolve().parents[2] / demo_assets.CACHE_FOLDER  # the digits' export is there
    files = demo_assets.site_files(repository, models=models, cache=cache)
    assert {"digits.onnx", "signs.onnx", "demo.json"} <= set(files)
    assert files["signs.onnx"].name.startswith(f"{TINY_SIGNS}-")
    pages = json.loads(files["demo.json"])["models"]
    assert [page["key"] for page in pages] == ["digits", "signs"]
    # A sign model takes no drawing: without its images it would have no input, so it is left out.
    monkeypatch.setenv("STNKIT_DATA", str(tmp_path / "no-data"))
    files = demo_assets.site_files(repository, models=models, cache=cache)
    assert "signs.onnx" not in files
    assert [page["key"] for page in json.loads(files["demo.json"])["models"]] == ["digits"]


def test_no_model_to_show_stops_the_build_in_one_line(demo_assets: ModuleType, tmp_path: Path) -> None:
    _node_modules(demo_assets, tmp_path)
    _, signs = demo_models_with_tiny_signs(demo_assets)  # not registered here
    with pytest.raises(demo_assets.DemoAssetError, match=f"none of {TINY_SIGNS} is shipped") as err:
        demo_assets.site_files(tmp_path, models=[signs], cache=tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_shipped_weights_that_do_not_load_stop_the_build_in_one_line(
    demo_assets: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register_tiny_signs(monkeypatch, tmp_path / "weights")
    altered = tmp_path / "weights" / f"{TINY_SIGNS}.safetensors"
    altered.unlink()  # a link to the kept file: replace the link, not the file
    altered.write_bytes(b"altered")
    _node_modules(demo_assets, tmp_path)
    _, signs = demo_models_with_tiny_signs(demo_assets)
    with pytest.raises(demo_assets.DemoAssetError, match="model 'signs': .*SHA-256") as err:
        demo_assets.site_files(tmp_path, models=[signs], cache=tmp_path / "cache")
    assert "\n" not in str(err.value)
