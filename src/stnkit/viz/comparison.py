"""Two classifiers on the images where they disagree: each input, with what each transformer made of it.

A figure has one block per :class:`ComparisonSection` (say, "A right, B wrong" and the reverse).
In a block every column is one test image: the input on top, with its true class and both models'
predictions, then under it the output of each transformer head of each model that has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from stnkit.viz.transformer import to_display, transformer_views

__all__ = ["ComparisonSection", "plot_comparison", "plot_model_comparison", "transformer_outputs"]


@dataclass(frozen=True)
class ComparisonSection:
    """One block of a comparison figure: some images and what each model says about them.

    Attributes:
        title: the block's heading, e.g. ``"A right, B wrong: 12 of 40"``.
        images: (n, C, H, W) in [0, 1]; n may be 0 (the block says "none").
        labels: (n,) true classes.
        predictions: per model, (n,) its predicted classes.
        outputs: per model, one (n, C, h, w) tensor per transformer head (see
            :func:`transformer_outputs`); empty for a model without a transformer.
    """

    title: str
    images: Tensor
    labels: Tensor
    predictions: Sequence[Tensor]
    outputs: Sequence[Sequence[Tensor]]


def transformer_outputs(model: nn.Module, images: Tensor) -> list[Tensor]:
    """What the input transformer (``model.stn``) makes of ``images``: one (N, C, h, w) per head.

    Empty for a model without an input transformer, so a baseline can be drawn beside an ST model.
    """
    if getattr(model, "stn", None) is None:
        return []
    return [view.warped for view in transformer_views(model, images)]


def _check(section: ComparisonSection, models: int) -> None:
    n = section.images.shape[0]
    if section.images.ndim != 4:
        raise ValueError(
            f"{section.title!r}: images should be (n, C, H, W), got {tuple(section.images.shape)}"
        )
    if len(section.predictions) != models or len(section.outputs) != models:
        raise ValueError(
            f"{section.title!r}: {len(section.predictions)} predictions and {len(section.outputs)} outputs "
            f"for {models} models"
        )
    tensors = [section.labels, *section.predictions, *(o for per_model in section.outputs for o in per_model)]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"{section.title!r}: every tensor should have the {n} images' first dimension")


def _caption(
    label: int, predictions: Sequence[int], letters: Sequence[str], names: Sequence[str] | None
) -> str:
    name = names[label][:18] if names is not None else str(label)
    true = f"true {label}" + (f" {name}" if name != str(label) else "")
    said = "  ".join(
        f"{letter}: {p}" + ("" if p == label else " x")
        for letter, p in zip(letters, predictions, strict=True)
    )
    return f"{true}\n{said}"


def plot_comparison(
    sections: Sequence[ComparisonSection],
    path: str | Path,
    *,
    model_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save a PNG with one block per section: inputs with true and predicted classes, then outputs.

    Models are called A, B, ... in the captions (``A: 14`` is model A's prediction, ``x`` marks a
    wrong one); the title line says which is which.

    Args:
        sections: the blocks, drawn top to bottom.
        path: PNG to write.
        model_names: one name per model, in the order of the sections' predictions and outputs.
        class_names: names of the classes, added to the true class in the captions.
        title: figure title.

    Raises:
        ValueError: a section's tensors disagree in length or in the number of models.
    """
    if not sections:
        raise ValueError("no sections to draw")
    letters = [chr(ord("A") + m) for m in range(len(model_names))]
    for section in sections:
        _check(section, len(model_names))
        if [len(o) for o in section.outputs] != [len(o) for o in sections[0].outputs]:
            raise ValueError(f"{section.title!r}: another number of transformer heads than the first section")
    # Rows of a block: the inputs, then every head of every model with a transformer.
    row_names = [
        [f"{letter}: output" + (f" {h + 1}" if len(per_model) > 1 else "") for h in range(len(per_model))]
        for letter, per_model in zip(letters, sections[0].outputs, strict=True)
    ]
    rows = 1 + sum(len(names) for names in row_names)
    cols = max(1, *(section.images.shape[0] for section in sections))
    cell = 1.25  # inches per image
    legend = ", ".join(f"{letter} = {name}" for letter, name in zip(letters, model_names, strict=True))
    height = len(sections) * (0.45 + (cell + 0.3) * rows) + 0.6
    fig = Figure(figsize=(1.0 + cell * cols, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    blocks = fig.subfigures(len(sections), 1, squeeze=False)[:, 0]
    for block, section in zip(blocks, sections, strict=True):
        block.suptitle(section.title, fontsize=10, x=0.01, ha="left")
        axes = block.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        if section.images.shape[0] == 0:
            axes[0][0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[0][0].transAxes)
        outputs = [o for per_model in section.outputs for o in per_model]
        for col in range(section.images.shape[0]):
            label = int(section.labels[col])
            predicted = [int(p[col]) for p in section.predictions]
            axes[0][col].imshow(to_display(section.images[col]), cmap="gray", vmin=0, vmax=1)
            axes[0][col].set_title(_caption(label, predicted, letters, class_names), fontsize=6)
            for row, output in enumerate(outputs, start=1):
                axes[row][col].imshow(to_display(output[col]), cmap="gray", vmin=0, vmax=1)
        for row, name in enumerate(["input", *(n for names in row_names for n in names)]):
            axes[row][0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"{title}\n{legend}" if title else legend, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_model_comparison(
    models: Sequence[nn.Module],
    images: Tensor,
    labels: Tensor,
    predictions: Sequence[Tensor],
    groups: Sequence[tuple[str, Sequence[int]]],
    path: str | Path,
    *,
    model_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """:func:`plot_comparison` of models on chosen images, running their transformers here.

    Args:
        models: the classifiers; those with an input transformer (``model.stn``) get output rows.
        images: (n, C, H, W) in [0, 1], every image any group shows.
        labels: (n,) their true classes.
        predictions: per model, (n,) its predictions on them (as found when the images were
            picked; not recomputed, so a near tie cannot flip).
        groups: ``(title, positions into images)`` per block, in drawing order.
        path: PNG to write.
        model_names: one per model.
        class_names: names of the classes for the captions.
        title: figure title.

    Raises:
        ValueError: lengths disagree, or a position is outside ``images``.
    """
    if not len(models) == len(predictions) == len(model_names):
        raise ValueError(f"{len(models)} models, {len(predictions)} predictions and {len(model_names)} names")
    n = images.shape[0]
    if labels.shape[0] != n or any(p.shape[0] != n for p in predictions):
        raise ValueError(f"labels and predictions should have one entry per image ({n})")
    outputs = [transformer_outputs(model, images) if n else [] for model in models]
    sections = []
    for heading, positions in groups:
        index = [int(i) for i in positions]
        if any(not 0 <= i < n for i in index):
            raise ValueError(f"{heading!r}: positions should lie in [0, {n - 1}], got {index}")
        sections.append(
            ComparisonSection(
                title=heading,
                images=images[index],
                labels=labels[index],
                predictions=[p[index] for p in predictions],
                outputs=[[head[index] for head in per_model] for per_model in outputs],
            )
        )
    return plot_comparison(sections, path, model_names=model_names, class_names=class_names, title=title)
