"""The classic STN animation: the transformer's output on a fixed batch, one frame per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from stnkit.viz.transformer import to_display, transformer_views

__all__ = ["montage", "save_gif", "transformer_frame"]


def montage(images: Tensor, *, ncol: int = 8, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile images (N, C, H, W) in [0, 1] into one RGB uint8 array, ``scale``-times enlarged.

    Example:
        >>> montage(torch.rand(5, 1, 4, 4), ncol=3, pad=1, scale=1).shape
        (11, 16, 3)
    """
    n = images.shape[0]
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    h, w = images.shape[-2:]
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 0.35, dtype=np.float32)
    for i in range(n):
        tile = to_display(images[i])
        if tile.ndim == 2:
            tile = np.repeat(tile[:, :, None], 3, axis=2)
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = tile
    canvas = np.kron(canvas, np.ones((scale, scale, 1), dtype=np.float32))
    return (canvas * 255).round().astype(np.uint8)


@torch.no_grad()
def transformer_frame(model: nn.Module, images: Tensor, *, caption: str = "", ncol: int = 8) -> np.ndarray:
    """One animation frame: the inputs on top, each transformer head's output below them."""
    views = transformer_views(model, images)
    rows = [montage(images, ncol=ncol)] + [montage(v.warped, ncol=ncol) for v in views]
    width = max(row.shape[1] for row in rows)  # outputs may be smaller than inputs (out_size)
    rows = [_pad_width(row, width) for row in rows]
    gap = np.full((6, width, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for row in rows:
        parts += [row, gap]
    frame = np.concatenate(parts[:-1], axis=0)
    if caption:
        band = Image.new("RGB", (frame.shape[1], 16), "white")
        ImageDraw.Draw(band).text((4, 2), caption, fill="black")
        frame = np.concatenate([np.asarray(band), frame], axis=0)
    return frame


def _pad_width(row: np.ndarray, width: int) -> np.ndarray:
    """Centre ``row`` (H, W, 3) on a white band ``width`` wide."""
    extra = width - row.shape[1]
    if extra == 0:
        return row
    left = extra // 2
    return np.pad(row, ((0, 0), (left, extra - left), (0, 0)), constant_values=255)


def save_gif(frames: Sequence[np.ndarray | str | Path], path: str | Path, *, duration_ms: int = 400) -> Path:
    """Write frames (arrays or image files) as a looping GIF; the last frame is held longer."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    images = [
        Image.open(f).convert("RGB") if isinstance(f, str | Path) else Image.fromarray(f) for f in frames
    ]
    durations = [duration_ms] * len(images)
    durations[-1] = duration_ms * 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    return path
