"""Draw the documentation's figures (docs/img/*.png) with stnkit's own functions. No training.

Every picture uses the first test images of MNIST (or the canonical distorted test sets, or GTSRB's test
split), so rerunning gives the same pictures:

    .venv/bin/python scripts/docs_figures.py [--data-root DIR] [--out docs/img]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

import stnkit
from stnkit.data import TEST_SEED, load_mnist, make_loader, save_grid
from stnkit.data.distortions import apply_rts, sample_rts_params, similarity_theta
from stnkit.models import create_model
from stnkit.viz import View, montage, plot_transformer, transformer_views

DIGITS = 8  # the first 8 test digits in every MNIST picture
DATASETS = ("r", "rts", "p", "e", "tc", "gtsrb")


def first_test_digits(root: str | None) -> Tensor:
    """The first ``DIGITS`` MNIST test digits, uint8 (N, 28, 28)."""
    return torch.as_tensor(load_mnist(root, split="test").images[:DIGITS])


def first_canonical_images(dataset: str, root: str | None) -> Tensor:
    """The first ``DIGITS`` images of a canonical test set (N, C, H, W) in [0, 1]."""
    loader = make_loader(dataset, split="test", batch_size=DIGITS, root=root, seed=TEST_SEED, limit=DIGITS)
    images, _ = next(iter(loader))
    return images


def save_montage(rows: list[Tensor], path: Path, *, scale: int = 3) -> Path:
    """Rows of equally sized images (N, C, H, W), stacked top to bottom, as one PNG."""
    picture = torch.cat([torch.from_numpy(montage(row, scale=scale)) for row in rows], dim=0)
    Image.fromarray(picture.numpy()).save(path)
    return path


def pooling_figure(digits: Tensor, path: Path) -> Path:
    """One digit moved by 0-3 px and rotated by 15, 45, 90 degrees; below, each after 2x2 max pooling twice."""
    digit = digits[:1].float().div(255)[:, None]  # (1, 1, 28, 28)
    angle = torch.tensor([0.0, 0.0, 0.0, 0.0, 15.0, 45.0, 90.0]).deg2rad().double()
    shift = torch.tensor([[px, 0.0] for px in (0, 1, 2, 3, 0, 0, 0)], dtype=torch.float64)
    theta = similarity_theta(angle, torch.ones_like(angle), shift, in_size=28, out_size=28)  # (7, 2, 3)
    posed = stnkit.warp(digit.expand(7, -1, -1, -1), theta.float())  # (7, 1, 28, 28)
    pooled = F.max_pool2d(F.max_pool2d(posed, 2), 2)  # (7, 1, 7, 7): what a CNN's pooling keeps
    shown = F.interpolate(pooled, scale_factor=4, mode="nearest")  # back to 28x28 for display
    return save_montage([posed, shown], path)


def rts_digits(digits: Tensor) -> tuple[Tensor, Tensor]:
    """The digits rotated, scaled and moved into a 42x42 canvas as RTS-MNIST does, with their matrices.

    Returns the images (N, 1, 42, 42) and the output-to-input matrices (N, 2, 3) that drew them (canvas
    positions to digit positions).
    """
    params = sample_rts_params(digits.shape[0], torch.Generator().manual_seed(0))
    images = apply_rts(digits, params)
    angle, scale, shift = (params[key].double() for key in ("angle", "scale", "shift"))
    return images, similarity_theta(angle, scale, shift, in_size=28, out_size=42)


def undo_rts_figure(digits: Tensor, path: Path) -> Path:
    """What a perfect transformer would do to RTS digits: sample the canvas where the upright digit lies.

    The matrix that drew each digit maps canvas positions to digit positions; its inverse maps each
    position of a 28x28 output to the canvas, which is exactly what a spatial transformer's parameters
    are (output to input).
    """
    images, canvas_to_digit = rts_digits(digits)
    digit_to_canvas = stnkit.invert(canvas_to_digit).float()  # (N, 2, 3)
    size = (images.shape[0], 1, 28, 28)
    grid = stnkit.affine_grid(digit_to_canvas, size)  # (N, 28, 28, 2): where each output pixel looks
    view = View(warped=stnkit.sample(images, grid), grid=grid, align_corners=False)
    return plot_transformer(images, [view], path, max_images=4, title="parameters that undo RTS")


def fresh_transformer_figure(digits: Tensor, path: Path) -> Path:
    """An untrained ST-CNN's transformer on RTS digits: it starts as the identity (the grid is the frame)."""
    images, _ = rts_digits(digits)
    torch.manual_seed(0)
    model = create_model("st-cnn-affine", image_size=(42, 42))
    return plot_transformer(
        images, transformer_views(model, images), path, max_images=4, title="a fresh ST-CNN: identity"
    )


def convention_figure(digits: Tensor, path: Path) -> Path:
    """Parameters map output to input: theta with x translation +0.5 samples to the right, moving content left."""
    digit = digits[:1].float().div(255)[:, None].expand(3, -1, -1, -1)  # (3, 1, 28, 28)
    theta = torch.tensor(
        [
            [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]],  # look half a width to the right
            [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]],  # look at the central half: zoom in
            [[math.cos(0.5), -math.sin(0.5), 0.0], [math.sin(0.5), math.cos(0.5), 0.0]],  # 0.5 rad
        ]
    )
    grid = stnkit.affine_grid(theta, tuple(digit.shape))
    view = View(warped=stnkit.sample(digit, grid), grid=grid, align_corners=False)
    return plot_transformer(digit, [view], path, max_images=3)


def dataset_figures(root: str | None, out: Path) -> list[Path]:
    """The first test images of each canonical distorted-MNIST set, and of GTSRB."""
    return [
        save_grid(first_canonical_images(name, root), out / f"data-{name}.png", ncols=DIGITS, scale=2)
        for name in DATASETS
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="data root (default: stnkit's usual search)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder of the PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    digits = first_test_digits(args.data_root)
    written = [
        pooling_figure(digits, args.out / "pooling.png"),
        convention_figure(digits, args.out / "convention.png"),
        fresh_transformer_figure(digits, args.out / "fresh-transformer.png"),
        undo_rts_figure(digits, args.out / "undo-rts.png"),
        *dataset_figures(args.data_root, args.out),
    ]
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
