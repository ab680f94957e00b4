"""Sample grids as PNG (pillow only), so a person can check the distortions by eye."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stnkit.files import atomic_write

__all__ = ["image_grid", "save_grid"]


def image_grid(images: torch.Tensor, *, ncols: int = 8, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile images into one uint8 picture.

    Args:
        images: Tensor[B, C, H, W] in [0, 1] with C = 1 (grey), 2 (shown as red / green) or 3.
        ncols: images per row.
        pad: grey separator in pixels (before scaling).
        scale: integer upscaling (nearest) so small digits are visible.

    Returns:
        Array (rows * (H + pad) + pad) * scale x (...) x 3, uint8 RGB.
    """
    b, c, h, w = images.shape
    if c == 1:
        rgb = images.expand(b, 3, h, w)
    elif c == 2:  # MNIST addition: one digit per colour
        rgb = torch.cat((images, torch.zeros(b, 1, h, w, dtype=images.dtype)), dim=1)
    elif c == 3:
        rgb = images
    else:
        raise ValueError(f"can show 1, 2 or 3 channels, got {c}")
    ncols = max(1, min(ncols, b))
    nrows = -(-b // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 96, dtype=np.uint8)
    tiles = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, tile in enumerate(tiles):
        row, col = divmod(i, ncols)
        top, left = pad + row * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = tile
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    ncols: int = 8,
    scale: int = 2,
) -> Path:
    """Write :func:`image_grid` of ``images`` to a PNG, atomically (temp file, then rename).

    The file gets the mode a plain ``open()`` would give (``0o666 & ~umask``).
    """
    picture = Image.fromarray(image_grid(images, ncols=ncols, scale=scale))
    return atomic_write(path, lambda handle: picture.save(handle, format="PNG"))
