"""A run folder's pictures and report (what `stnkit train` and `stnkit show` draw), and that
matplotlib, which draws them, is a core dependency."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from stnkit.models import create_model
from stnkit.viz import FRAMES_DIR, PICTURES, finish_run, save_epoch_frame

REPO_ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        for separator in "<>=!~;[ ":
            requirement = requirement.split(separator)[0]
        names.add(requirement.strip().lower())
    return names


def test_matplotlib_is_a_core_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "matplotlib" in _requirement_names(project["dependencies"])
    # The old extra stays installable and adds nothing matplotlib-related to choose.
    assert "matplotlib" not in _requirement_names(project["optional-dependencies"].get("viz", []))


def test_a_transformer_run_gets_frames_pictures_and_a_report(tmp_path: Path) -> None:
    model = create_model("st-fcn-affine", image_size=(28, 28), hidden=(8,)).eval()
    snapshot = torch.rand(4, 1, 28, 28)
    for epoch in range(3):
        save_epoch_frame(model, snapshot, tmp_path, epoch=epoch)
    records = [
        {"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.2 / e, "test_error": 0.5 / e} for e in (1, 2)
    ]
    report = finish_run(
        tmp_path, model=model, snapshot=snapshot, records=records, config={"lr": 0.1}, title="t"
    )
    assert sorted(p.name for p in (tmp_path / FRAMES_DIR).iterdir()) == [
        "epoch_0000.png",
        "epoch_0001.png",
        "epoch_0002.png",
    ]
    for name in PICTURES.values():
        assert (tmp_path / name).stat().st_size > 500, name
    with Image.open(tmp_path / PICTURES["gif"]) as gif:
        assert gif.n_frames == 3
    text = report.read_text()
    assert all(f"]({name})" in text for name in PICTURES.values())
    assert "Machine:" in text and (tmp_path / "report.html").is_file()


def test_a_baseline_run_gets_curves_and_a_report_only(tmp_path: Path) -> None:
    model = create_model("fcn", image_size=(28, 28), hidden=(8,))
    records = [{"epoch": 1, "train_loss": 1.0, "test_error": 0.3}]
    report = finish_run(tmp_path, model=model, snapshot=None, records=records, config={}, title="t")
    assert (tmp_path / PICTURES["curves"]).is_file()
    assert not (tmp_path / PICTURES["transformer"]).exists()
    assert f"]({PICTURES['transformer']})" not in report.read_text()


def test_epoch_frames_get_the_mode_open_would_give(tmp_path: Path) -> None:
    import os
    import stat

    model = create_model("st-fcn-affine", image_size=(28, 28), hidden=(8,)).eval()
    old = os.umask(0o022)
    try:
        path = save_epoch_frame(model, torch.rand(2, 1, 28, 28), tmp_path, epoch=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
