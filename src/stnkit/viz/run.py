"""Pictures and report of a training run folder: per-epoch frames, then everything at the end.

The engine writes ``metrics.jsonl`` and checkpoints and knows nothing of pictures; these functions
take what they draw (records, config, a fixed batch of images) as arguments, so a Python user can
call them after their own :func:`stnkit.engine.fit` just as ``stnkit train`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from stnkit.files import atomic_write
from stnkit.machine import cpu_model
from stnkit.viz.curves import plot_curves
from stnkit.viz.gif import save_gif, transformer_frame
from stnkit.viz.report import write_report
from stnkit.viz.transformer import plot_transformer, transformer_views

__all__ = ["FRAMES_DIR", "PICTURES", "finish_run", "machine_description", "save_epoch_frame"]

FRAMES_DIR = "frames"
PICTURES = {
    "curves": "curves.png",
    "transformer": "transformer.png",
    "gif": "transformer.gif",
}


def save_epoch_frame(model: nn.Module, images: Tensor, run_dir: str | Path, *, epoch: int) -> Path:
    """Write ``frames/epoch_NNNN.png`` of ``model`` on ``images`` (Tensor[N, C, H, W]), atomically.

    Atomic so that a run killed mid-write never leaves a torn PNG for the GIF.
    """
    frame = Image.fromarray(transformer_frame(model, images, caption=f"epoch {epoch}"))
    path = Path(run_dir) / FRAMES_DIR / f"epoch_{epoch:04d}.png"
    return atomic_write(path, lambda handle: frame.save(handle, format="PNG"))


def finish_run(
    run_dir: str | Path,
    *,
    model: nn.Module,
    snapshot: Tensor | None,
    records: Sequence[dict[str, Any]],
    config: Mapping[str, Any],
    title: str,
) -> Path:
    """Write the curves, the transformer pictures, the GIF and the report of a run folder.

    Args:
        run_dir: the run folder (frames from :func:`save_epoch_frame` are read from it).
        model: the trained model.
        snapshot: Tensor[N, C, H, W], the fixed batch to draw the transformer on; ``None`` for a
            model without an input transformer.
        records: the per-epoch metrics (``metrics.jsonl``).
        config: the run's settings, shown as a table.
        title: heading of the pictures and the report.

    Returns:
        The path of ``report.md``.
    """
    run_dir = Path(run_dir)
    plot_curves(records, run_dir / PICTURES["curves"], title=title)
    images = [("Training curves", PICTURES["curves"])]
    if snapshot is not None:
        plot_transformer(
            snapshot,
            transformer_views(model, snapshot),
            run_dir / PICTURES["transformer"],
            title=title,
        )
        frames = sorted((run_dir / FRAMES_DIR).glob("epoch_*.png"))
        if frames:
            save_gif(frames, run_dir / PICTURES["gif"])
        images += [
            ("Transformer: sampling grid over the input, and the output", PICTURES["transformer"]),
            ("Transformer output over training (inputs on top)", PICTURES["gif"]),
        ]
    return write_report(
        run_dir,
        title=title,
        config=dict(config),
        records=records,
        images=images,
        notes=[f"Machine: {machine_description()}."],
    )


def machine_description() -> str:
    """CPU model, cores, torch version and threads, for the report."""
    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
