"""Pictures: grid overlay maths, montage/GIF, curves and the run report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from stnkit import affine_grid
from stnkit.models import create_model
from stnkit.viz import (
    grid_to_pixels,
    montage,
    plot_curves,
    plot_transformer,
    save_gif,
    transformer_frame,
    transformer_views,
    write_report,
)


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_grid_lands_on_pixel_centres(align_corners: bool) -> None:
    theta = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    grid = affine_grid(theta, (1, 1, 5, 7), align_corners=align_corners)
    pix = grid_to_pixels(grid, (5, 7), align_corners=align_corners)
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(7.0), indexing="ij")
    torch.testing.assert_close(pix[0, ..., 0], xs, atol=1e-5, rtol=0)
    torch.testing.assert_close(pix[0, ..., 1], ys, atol=1e-5, rtol=0)


@pytest.mark.parametrize("flag", ["yes", None, 1])
def test_grid_to_pixels_takes_a_bool_convention(flag: object) -> None:
    with pytest.raises(TypeError, match="align_corners must be a bool"):
        grid_to_pixels(torch.zeros(1, 2, 2, 2), (2, 2), align_corners=flag)  # type: ignore[arg-type]


def test_montage_shape_and_range() -> None:
    tiles = montage(torch.rand(10, 3, 6, 5), ncol=4, pad=1, scale=2)
    assert tiles.shape == (2 * (3 * 7 + 1), 2 * (4 * 6 + 1), 3)
    assert tiles.dtype.name == "uint8"


def test_views_of_single_and_parallel_transformers(tmp_path: Path) -> None:
    single = create_model("st-cnn-affine", crop_to=None)
    x = torch.rand(3, 1, 42, 42)
    (view,) = transformer_views(single, x)
    torch.testing.assert_close(view.warped, x, atol=1e-5, rtol=0)  # identity at init
    assert view.grid.shape == (3, 42, 42, 2)

    parallel = create_model("2xst-fcn-affine", in_channels=2, num_classes=19)
    views = transformer_views(parallel, torch.rand(3, 2, 42, 42))
    assert len(views) == 2 and views[1].warped.shape == (3, 2, 28, 28)
    path = plot_transformer(torch.rand(3, 2, 42, 42), views, tmp_path / "p.png", title="two")
    assert Image.open(path).size[0] > 100


def test_views_need_a_transformer() -> None:
    with pytest.raises(ValueError, match="no input spatial transformer"):
        transformer_views(create_model("cnn"), torch.rand(1, 1, 42, 42))


def test_gif_has_one_frame_per_epoch(tmp_path: Path) -> None:
    model = create_model("st-cnn-affine")
    images = torch.rand(4, 1, 42, 42)
    frames = [transformer_frame(model, images, caption=f"epoch {e}") for e in range(3)]
    path = save_gif(frames, tmp_path / "a.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    with pytest.raises(ValueError):
        save_gif([], tmp_path / "b.gif")


def test_frame_and_figure_with_a_smaller_output(tmp_path: Path) -> None:
    model = create_model("st-cnn-affine")  # crops 42x42 inputs to 28x28
    images = torch.rand(5, 1, 42, 42)
    frame = transformer_frame(model, images, ncol=5)
    assert frame.shape[1] == montage(images, ncol=5).shape[1]
    (view,) = transformer_views(model, images)
    assert view.warped.shape == (5, 1, 28, 28) and view.grid.shape == (5, 28, 28, 2)
    plot_transformer(images, [view], tmp_path / "crop.png")


def test_curves_and_report(tmp_path: Path) -> None:
    records = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_error": 0.5 / e,
            "test_loss": 1.1 / e,
            "test_error": 0.4 / e,
            "images_per_s": 900.0,
            "lr": 0.001,
            "elapsed_s": 60.0 * e,
        }
        for e in (1, 2, 3)
    ]
    plot_curves(records, tmp_path / "curves.png", title="demo")
    report = write_report(
        tmp_path,
        title="demo run",
        config={"lr": 0.001, "model": "cnn"},
        records=records,
        images=[("Curves", "curves.png"), ("Missing", "nope.png")],
        notes=["a note"],
    )
    text = report.read_text()
    assert "13.33%" in text and "(curves.png)" in text and "nope.png" not in text
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html  # self-contained
