"""What a spatial transformer does to a batch: input with its sampling grid, beside the output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from stnkit.engine.device import model_device
from stnkit.geometry.checks import check_flag

__all__ = ["View", "grid_to_pixels", "plot_transformer", "to_display", "transformer_views"]


@dataclass
class View:
    """One transformer head applied to a batch."""

    warped: Tensor  # (N, C, h, w): the head's output
    grid: Tensor  # (N, h, w, 2): where each output pixel samples the input, normalised (x, y)
    align_corners: bool


def _input_transformer(model: nn.Module) -> nn.Module:
    stn = getattr(model, "stn", None)
    if stn is None:
        raise ValueError(
            f"{type(model).__name__} has no input spatial transformer (model.stn is missing or "
            "None); pictures of the transformer need an ST model"
        )
    return stn


@torch.no_grad()
def transformer_views(model: nn.Module, images: Tensor) -> list[View]:
    """Run the input transformer of ``model`` stage by stage: one :class:`View` per head.

    ``model.stn`` is a :class:`stnkit.SpatialTransformer` (one head) or a transformer with
    ``heads`` sharing one localisation (``localize`` gives (N, k, P)). The images go to the
    transformer's device (a model trained on a GPU); the views come back on the CPU.
    """
    stn = _input_transformer(model)
    images = images.to(model_device(stn))
    was_training = model.training
    model.eval()
    params = stn.localize(images)  # type: ignore[operator]
    heads = list(getattr(stn, "heads", []))
    if heads:
        pairs = [(head, params[:, i]) for i, head in enumerate(heads)]
    else:
        pairs = [(stn, params)]
    views = [
        View(
            warped=head.warp(images, p).cpu(),
            grid=head.grid(p, tuple(images.shape)).cpu(),
            align_corners=bool(head.align_corners),
        )
        for head, p in pairs
    ]
    model.train(was_training)
    return views


def grid_to_pixels(grid: Tensor, input_hw: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Normalised sample positions (…, 2) to input pixel coordinates (x, y), pixel centres at ints.

    Convention: as :func:`torch.nn.functional.grid_sample`; with ``align_corners=False`` -1 and 1
    are the outer edges of the corner pixels, with True their centres.
    """
    h, w = input_hw
    size = grid.new_tensor([w, h])
    if check_flag(align_corners, "align_corners"):
        return (grid + 1) * (size - 1) / 2
    return ((grid + 1) * size - 1) / 2


def to_display(image: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] to an array imshow understands: gray (H, W) or RGB (H, W, 3).

    One channel is gray, three are RGB; other counts (e.g. two stacked digits) show their max.
    """
    image = image.detach().float().clamp(0, 1).cpu()
    if image.shape[0] == 3:
        return image.permute(1, 2, 0).numpy()
    if image.shape[0] == 1:
        return image[0].numpy()
    return image.amax(dim=0).numpy()


def plot_transformer(
    images: Tensor,
    views: list[View],
    path: str | Path,
    *,
    max_images: int = 8,
    grid_lines: int = 7,
    title: str | None = None,
) -> Path:
    """Save a figure: each row an input with its sampling grid(s) drawn over it, then the outputs.

    Args:
        images: the inputs (N, C, H, W) in [0, 1].
        views: from :func:`transformer_views`; each head's grid gets its own colour.
        path: PNG to write.
        max_images: rows to draw.
        grid_lines: grid lines per direction (the outline of the sampled region is always drawn).
        title: figure title.
    """
    n = min(max_images, images.shape[0])
    cols = 1 + len(views)
    fig = Figure(figsize=(1.9 * cols, 1.9 * n + (0.4 if title else 0)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, cols, squeeze=False)
    colours = ["#ff3b30", "#34c759", "#0a84ff", "#ffcc00"]
    h, w = images.shape[-2:]
    for row in range(n):
        ax = axes[row][0]
        ax.imshow(to_display(images[row]), cmap="gray", vmin=0, vmax=1)
        for k, view in enumerate(views):
            colour = colours[k % len(colours)]
            pix = grid_to_pixels(view.grid[row], (h, w), align_corners=view.align_corners)
            _draw_grid(ax, pix.cpu().numpy(), colour, grid_lines)
            out = axes[row][1 + k]
            out.imshow(to_display(view.warped[row]), cmap="gray", vmin=0, vmax=1)
            if row == 0:
                out.set_title(f"output {k + 1}" if len(views) > 1 else "output", fontsize=9)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        if row == 0:
            ax.set_title("input + grid", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _draw_grid(ax: Axes, pix: np.ndarray, colour: str, lines: int) -> None:
    """Draw a (h, w, 2) pixel-coordinate grid: ``lines`` rows and columns plus the outline."""
    h, w = pix.shape[:2]
    rows = np.unique(np.linspace(0, h - 1, lines).round().astype(int))
    cols = np.unique(np.linspace(0, w - 1, lines).round().astype(int))
    for r in rows:
        edge = r in (0, h - 1)
        ax.plot(pix[r, :, 0], pix[r, :, 1], color=colour, lw=1.2 if edge else 0.5)
    for c in cols:
        edge = c in (0, w - 1)
        ax.plot(pix[:, c, 0], pix[:, c, 1], color=colour, lw=1.2 if edge else 0.5)
