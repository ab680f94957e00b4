"""docs/demo_assets.py, the demo page's build step: its refusals and its fallback, without a site build."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_assets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_assets", REPO_ROOT / "docs" / "demo_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    data = demo_assets.page_data()
    assert data["strip"] == []
    assert "stnkit data download mnist" in data["strip_missing"]
    # The page still gets what it needs to run the model on a drawing.
    assert data["input_shape"] == [1, 42, 42] and data["output_size"] == [28, 28]
    assert data["align_corners"] is False
