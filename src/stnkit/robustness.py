"""How a classifier's test error grows as the MNIST test digits are rotated, scaled or moved.

The paper argues that pooling gives a CNN only small, local invariance, and that a spatial transformer
gives it invariance to large distortions. A sweep measures that: every :class:`Pose` of a fixed grid is
applied to the same test digits (no randomness anywhere) and each model's error is recorded per pose.

The posed digits are made by :func:`stnkit.data.distortions.apply_rts`, the machinery of the RTS
variant (:func:`~stnkit.data.distortions.similarity_theta` and the fixed-point sampler), so they are
bit-identical on every machine, like the canonical test sets. Each digit (28x28) is rotated and scaled
about its centre and drawn with its centre ``shift_px`` from the centre of a canvas of the side the
model takes: 28 for models of plain MNIST, R, P and E, 42 for RTS models. At angle 0, scale 1 and no
shift a 28 canvas gives back the digits exactly and a 42 canvas pads them by 7 zero pixels per side.

``stnkit robustness`` is :func:`pose_errors` per axis, then :func:`write_sweep` (the JSON, a table
per axis and the plot); :func:`read_sweep` reads such a file back, checked, for a report or to carry
its models into a later sweep. The same three serve models built in Python.

Example:
    >>> digits = torch.zeros(2, 28, 28, dtype=torch.uint8)
    >>> place_digits(digits, Pose(angle_degrees=30.0), canvas=42).shape
    torch.Size([2, 1, 42, 42])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stnkit.data.distortions import DIGIT, apply_rts
from stnkit.files import atomic_write_text

__all__ = [
    "DEFAULT_SWEEPS",
    "PLOT_NAME",
    "RESULT_NAME",
    "RESULT_VERSION",
    "SWEEP_UNITS",
    "TABLE_NAME",
    "Pose",
    "SweepFileError",
    "format_table",
    "mnist_canvas",
    "place_digits",
    "pose_errors",
    "read_sweep",
    "sweep_poses",
    "write_sweep",
]

RESULT_NAME = "robustness.json"
"""The sweep's result file in its folder (:func:`write_sweep`, :func:`read_sweep`)."""
TABLE_NAME = "robustness.md"
"""The sweep's tables, one per axis, in its folder."""
PLOT_NAME = "robustness.png"
"""The sweep's plot in its folder."""
RESULT_VERSION = 2
"""The result file's version; 2: a run may be shipped weights (pretrained, recorded_test_error)."""

# The fixed grid of each sweep (seed-free). Angles cover the whole half turn: a 180-degree turn makes
# a 6 of a 9, so errors there measure invariance beyond what the digits themselves allow. Scales span
# RTS's training range [0.7, 1.2] and beyond; shifts move the digit to the right by whole pixels, up to
# half a digit (14 px), where a 28x28 canvas has cut off half of it.
DEFAULT_SWEEPS: dict[str, tuple[float, ...]] = {
    "angle": tuple(float(a) for a in range(0, 181, 15)),
    "scale": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5),
    "shift": tuple(float(t) for t in range(0, 15, 2)),
}
SWEEP_UNITS = {"angle": "degrees", "scale": "x digit size", "shift": "px to the right"}


@dataclass(frozen=True)
class Pose:
    """Where a test digit is drawn: turned, resized and moved about the canvas centre.

    Attributes:
        angle_degrees: rotation, positive clockwise on screen (the distortions' convention: from +x
            towards +y, y pointing down); 90 is ``torch.rot90(digit, -1, (-2, -1))``.
        scale: size of the drawn digit relative to its 28 pixels, > 0.
        shift_px: (x, y) offset of the digit's centre from the canvas centre, in pixels.
    """

    angle_degrees: float = 0.0
    scale: float = 1.0
    shift_px: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        # Validated once, here: every sweep is built from Poses.
        if not math.isfinite(self.angle_degrees):
            raise ValueError(f"a pose's angle must be a finite number of degrees, got {self.angle_degrees}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"a pose's scale must be a finite number > 0, got {self.scale}")
        if len(self.shift_px) != 2 or not all(math.isfinite(t) for t in self.shift_px):
            raise ValueError(
                f"a pose's shift must be two finite numbers of pixels (x, y), got {self.shift_px}"
            )


def sweep_poses(axis: str, values: Sequence[float]) -> list[Pose]:
    """The poses of one sweep: ``values`` of ``axis`` (``angle``, ``scale`` or ``shift``), the rest neutral.

    Raises:
        ValueError: unknown axis, no values, or a value a pose cannot take (the message names it).

    Example:
        >>> sweep_poses("shift", [0, 4])[1]
        Pose(angle_degrees=0.0, scale=1.0, shift_px=(4.0, 0.0))
    """
    if axis not in DEFAULT_SWEEPS:
        raise ValueError(f"unknown sweep {axis!r}; valid: {list(DEFAULT_SWEEPS)}")
    if len(values) == 0:
        raise ValueError(f"the {axis} sweep needs at least one value")
    if axis == "angle":
        return [Pose(angle_degrees=float(v)) for v in values]
    if axis == "scale":
        return [Pose(scale=float(v)) for v in values]
    return [Pose(shift_px=(float(v), 0.0)) for v in values]


def mnist_canvas(*, in_channels: int, num_classes: int, image_size: Sequence[int]) -> int:
    """The canvas side for a model built for these inputs, if it classifies single MNIST digits.

    Raises:
        ValueError: not 1 channel, 10 classes and a square image of at least 28 px.
    """
    size = [int(s) for s in image_size]
    if in_channels != 1 or num_classes != 10 or len(size) != 2 or size[0] != size[1] or size[0] < DIGIT:
        raise ValueError(
            "robustness sweeps single MNIST digits: it needs a model of 1 channel, 10 classes and a "
            f"square image of at least {DIGIT} px, got {in_channels} channel(s), {num_classes} classes, "
            f"image size {size}"
        )
    return size[0]


def place_digits(digits: Tensor, pose: Pose, *, canvas: int) -> Tensor:
    """Draw ``digits`` in ``pose`` into a ``canvas`` square, bit-identically on every machine.

    Args:
        digits: uint8 Tensor[N, 28, 28] (or float in [0, 1], multiples of 1/255).
        pose: the rotation, scale and shift.
        canvas: side of the output in pixels.

    Returns:
        float32 Tensor[N, 1, canvas, canvas] in [0, 1], multiples of 1/255.
    """
    n = digits.shape[0]
    # float64 parameters computed once in Python floats: the same bits everywhere (apply_rts keeps float64).
    params = {
        "angle": torch.full((n,), math.radians(pose.angle_degrees), dtype=torch.float64),
        "scale": torch.full((n,), pose.scale, dtype=torch.float64),
        "shift": torch.tensor(pose.shift_px, dtype=torch.float64).expand(n, 2),
    }
    return apply_rts(digits, params, canvas=canvas)


def _check_digits(digits: Tensor, labels: Tensor) -> None:
    if digits.dim() != 3 or tuple(digits.shape[1:]) != (DIGIT, DIGIT):
        raise ValueError(f"digits must be (N, {DIGIT}, {DIGIT}), got {tuple(digits.shape)}")
    if labels.shape != (digits.shape[0],):
        raise ValueError(f"labels must be ({digits.shape[0]},), one per digit, got {tuple(labels.shape)}")
    if digits.shape[0] == 0:
        raise ValueError("no digits to sweep (N = 0)")


@torch.no_grad()
def pose_errors(
    models: Sequence[nn.Module],
    digits: Tensor,
    labels: Tensor,
    poses: Sequence[Pose],
    *,
    canvas: int,
    batch_size: int = 500,
) -> Tensor:
    """Test error of every model at every pose of the same digits.

    The posed images are made once per batch and pose and shared by all ``models`` (which must all
    take ``canvas``-sized inputs): making them costs about as much as classifying them.

    Args:
        models: classifiers of (N, 1, canvas, canvas) images to (N, 10) logits; put in eval mode here.
        digits: uint8 Tensor[N, 28, 28], the test digits.
        labels: int64 Tensor[N].
        poses: where to draw the digits.
        canvas: side of the images the models take.
        batch_size: digits per forward pass.

    Returns:
        float64 Tensor[len(models), len(poses)]: the fraction of digits each model gets wrong.
    """
    _check_digits(digits, labels)
    if canvas < DIGIT:
        raise ValueError(f"canvas must be at least {DIGIT} px, got {canvas}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    wrong = torch.zeros(len(models), len(poses), dtype=torch.int64)
    for start in range(0, digits.shape[0], batch_size):
        batch, batch_labels = digits[start : start + batch_size], labels[start : start + batch_size]
        for j, pose in enumerate(poses):
            images = place_digits(batch, pose, canvas=canvas)  # (B, 1, canvas, canvas)
            for i, model in enumerate(models):
                wrong[i, j] += int((model(images).argmax(dim=1) != batch_labels).sum())
    for model, mode in zip(models, modes, strict=True):
        model.train(mode)
    return wrong.double() / digits.shape[0]


def format_table(axis: str, values: Sequence[float], errors: dict[str, Sequence[float]]) -> str:
    """A Markdown table of one sweep: a row per value, a column per model, error in percent.

    Example:
        >>> print(format_table("scale", [1.0], {"cnn on mnist": [0.012]}))
        | scale (x digit size) | cnn on mnist |
        |---:|---:|
        | 1 | 1.20 |
    """
    names = list(errors)
    lines = [
        f"| {axis} ({SWEEP_UNITS.get(axis, '')}) | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for k, value in enumerate(values):
        cells = " | ".join(f"{100 * errors[name][k]:.2f}" for name in names)
        lines.append(f"| {value:g} | {cells} |")
    return "\n".join(lines)


class SweepFileError(ValueError):
    """A ``robustness.json`` that cannot be read, or is not a sweep of MNIST test digits."""


def read_sweep(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sweep's ``robustness.json``, its shape checked: the digits, the sweeps and every run's errors.

    Returns:
        The parsed file: ``digits`` (``{"dataset": "mnist", "split": "test", "count": N}``),
        ``sweeps`` (axis -> ``{"unit", "values"}``) and ``runs`` (each with a ``label`` and, per
        axis, one error per value).

    Raises:
        SweepFileError: unreadable, not JSON, another version (1 and 2 are read), or any of the
            above missing or malformed; the one-line message starts with ``path``.
    """
    try:
        sweep = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SweepFileError(f"{path}: not a readable {RESULT_NAME} ({err})") from err
    if not isinstance(sweep, dict) or sweep.get("version") not in (1, RESULT_VERSION):
        raise SweepFileError(f"{path}: not a {RESULT_NAME} of stnkit robustness (version 1 or 2)")
    sweeps, digits, runs = sweep.get("sweeps"), sweep.get("digits"), sweep.get("runs")
    if not (
        isinstance(sweeps, dict)
        and all(isinstance(v, dict) and isinstance(v.get("values"), list) for v in sweeps.values())
    ):
        raise SweepFileError(f"{path}: its 'sweeps' is not a dict of sweeps with their values")
    if not (
        isinstance(digits, dict)
        and digits.get("dataset") == "mnist"
        and digits.get("split") == "test"
        and isinstance(digits.get("count"), int)
    ):
        raise SweepFileError(f"{path}: it posed {digits!r}, not a count of MNIST test digits")
    counts = {axis: len(v["values"]) for axis, v in sweeps.items()}
    if not (isinstance(runs, list) and all(_is_run(run, counts) for run in runs)):
        raise SweepFileError(f"{path}: its 'runs' are not labelled models with an error per value")
    labels = [run["label"] for run in runs]
    if len(set(labels)) != len(labels):
        raise SweepFileError(f"{path}: two of its runs share a label ({labels})")
    return sweep


def _is_run(run: object, counts: Mapping[str, int]) -> bool:
    """Whether ``run`` has a label and, per axis, ``counts[axis]`` errors that are numbers."""
    if not (
        isinstance(run, dict) and isinstance(run.get("label"), str) and isinstance(run.get("errors"), dict)
    ):
        return False
    for axis, count in counts.items():
        errors = run["errors"].get(axis)
        if not (isinstance(errors, list) and len(errors) == count):
            return False
        if not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in errors):
            return False
    return True


def write_sweep(
    out: str | os.PathLike[str],
    sweeps: Mapping[str, Sequence[float]],
    runs: Sequence[Mapping[str, Any]],
    *,
    count: int,
) -> None:
    """Write a sweep into ``out``: ``robustness.json``, a table per axis, and the plot.

    Args:
        out: an existing folder.
        sweeps: axis (a key of :data:`SWEEP_UNITS`) -> its values.
        runs: one record per model, in legend order: a unique ``label``, ``errors`` (axis -> one
            error fraction per value, e.g. :func:`pose_errors`' rows), and whatever else says where
            the model comes from (checkpoint, seed...).
        count: how many MNIST test digits were posed (the first ``count``).

    Raises:
        ValueError: an axis not in :data:`SWEEP_UNITS`, two runs sharing a label, or a run without
            an error per value.
    """
    from stnkit.viz import plot_robustness  # matplotlib only where a sweep is written

    unknown = sorted(set(sweeps) - set(SWEEP_UNITS))
    if unknown:
        raise ValueError(f"sweeps must be among {list(SWEEP_UNITS)}, got {unknown}")
    labels = [run["label"] for run in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the runs' labels must differ, got {labels}")
    errors = {run["label"]: run["errors"] for run in runs}
    for label, per_axis in errors.items():
        for axis, values in sweeps.items():
            if len(per_axis.get(axis) or []) != len(values):
                raise ValueError(f"{label!r}: no error for each of the {len(values)} values of {axis!r}")
    folder = Path(out)
    result = {
        "version": RESULT_VERSION,
        "digits": {"dataset": "mnist", "split": "test", "count": count},
        "sweeps": {axis: {"unit": SWEEP_UNITS[axis], "values": list(v)} for axis, v in sweeps.items()},
        "runs": [dict(run) for run in runs],
    }
    atomic_write_text(folder / RESULT_NAME, json.dumps(result, indent=1) + "\n")
    tables = [
        format_table(axis, values, {label: errors[label][axis] for label in errors})
        for axis, values in sweeps.items()
    ]
    header = f"Test error (%) on the first {count} MNIST test digits, posed without randomness.\n\n"
    atomic_write_text(folder / TABLE_NAME, header + "\n\n".join(tables) + "\n")
    title = f"MNIST test digits ({count}): error against pose"
    plot_robustness(sweeps, errors, folder / PLOT_NAME, units=SWEEP_UNITS, title=title)
