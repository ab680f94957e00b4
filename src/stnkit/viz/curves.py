"""Training curves from the per-epoch metrics records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_curves"]


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [
        (int(r["epoch"]), float(r[key]))
        for r in records
        if isinstance(r.get(key), int | float) and "epoch" in r
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Plot loss and error (%) per epoch, train and test, to a PNG.

    Args:
        records: metrics records with ``epoch``, ``train_loss``, ``train_error`` and, where
            evaluated, ``test_loss`` and ``test_error``.
        path: PNG to write.
        title: figure title.
    """
    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, err_ax = fig.subplots(1, 2)
    for split, style in (("train", "-o"), ("test", "-s")):
        x, y = _series(records, f"{split}_loss")
        if x:
            loss_ax.plot(x, y, style, ms=3, label=split)
        x, y = _series(records, f"{split}_error")
        if x:
            err_ax.plot(x, [100 * v for v in y], style, ms=3, label=split)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    err_ax.set(xlabel="epoch", ylabel="error (%)", title="error")
    if any(isinstance(r.get("test_error"), int | float) and r["test_error"] > 0 for r in records):
        err_ax.set_yscale("log")
    for ax in (loss_ax, err_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
