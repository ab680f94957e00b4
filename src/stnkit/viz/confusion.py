"""The errors of a classifier as a confusion picture: which classes are taken for which.

Only the errors are drawn: the diagonal (correct predictions) is left blank, so that a few
confusions are not drowned by thousands of correct answers, and the colour of a cell is the
*logarithm* of its count, so that one confusion and a hundred both show. Every non-zero cell also
carries its count, and each row ends with the class's errors and images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter
from torch import Tensor

__all__ = ["plot_confusion"]


def plot_confusion(
    matrix: Tensor | np.ndarray,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save a PNG of the off-diagonal of a confusion matrix, log colour scale, counts written in.

    Rows are true classes, columns predicted ones (as :func:`stnkit.engine.confusion_matrix`);
    the diagonal is blank (grey). Rows are labelled ``"k name"``, columns ``k``; the right margin
    gives each class's ``errors/images``. The size grows with the number of classes so that 43
    stay readable.

    Args:
        matrix: (K, K) non-negative integer counts.
        path: PNG to write.
        class_names: K names for the row labels.
        title: figure title (a note on the colour scale is added under it).

    Raises:
        ValueError: ``matrix`` is not square with non-negative counts, or the names are not K.
    """
    counts = np.asarray(matrix.cpu() if isinstance(matrix, Tensor) else matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"matrix should be square (K, K), got shape {counts.shape}")
    if (counts < 0).any() or not np.array_equal(counts, np.round(counts)):
        raise ValueError("matrix should hold non-negative integer counts")
    k = counts.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}x{k} matrix")
    counts = counts.astype(np.int64)
    errors = counts.copy()
    np.fill_diagonal(errors, 0)
    shown = np.ma.masked_equal(errors, 0)  # zero cells (and the diagonal) stay blank

    side = max(4.0, 0.26 * k + 3.0)  # inches: ~0.26 in per class keeps 43 rows of 6-pt labels apart
    fig = Figure(figsize=(side + 1.6, side), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_facecolor("white")
    ax.imshow(np.eye(k), cmap="Greys", vmin=0, vmax=4, interpolation="nearest")  # light grey diagonal
    norm = LogNorm(vmin=1, vmax=max(2, int(errors.max())))
    image = ax.imshow(shown, cmap="viridis_r", norm=norm, interpolation="nearest")
    font = 7 if k <= 20 else 5
    for row, col in zip(*np.nonzero(errors), strict=True):
        dark = norm(errors[row, col]) > 0.5  # the dark half of viridis_r: write in white
        colour = "white" if dark else "black"
        ax.text(col, row, str(errors[row, col]), ha="center", va="center", fontsize=font, color=colour)
    for row in range(k):
        ax.text(k - 0.2, row, f"{errors[row].sum()}/{counts[row].sum()}", va="center", fontsize=font)
    ax.text(k - 0.2, -1, "errors/images", va="bottom", fontsize=font)
    # A name that only repeats the label (digits) is left out.
    names = [class_names[i] if class_names is not None else str(i) for i in range(k)]
    labels = [f"{i} {name}" if name != str(i) else str(i) for i, name in enumerate(names)]
    ax.set_yticks(range(k), labels, fontsize=6)
    ax.set_xticks(range(k), [str(i) for i in range(k)], fontsize=6, rotation=90)
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.08, label="errors (log scale)")
    bar.ax.yaxis.set_major_formatter(ScalarFormatter())  # 1, 10, 100 rather than 10^0, 10^1
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    note = f"errors only: diagonal blank, log colour scale; {errors.sum()} errors in {counts.sum()} images"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
