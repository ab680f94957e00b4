"""Numbers the report's prose quotes, computed from the result files and the grids, never typed in.

Each function answers one sentence of docs/paper-results.md, so that a new seed or a changed model
changes the sentence with the tables instead of leaving it stale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from stnkit.engine import TrainConfig
from stnkit.reproduce.grids import DEFAULT_RECIPE, GRIDS, LONG_FCN_RECIPE, Cell, Recipe, is_fcn_family
from stnkit.reproduce.results import cell_model, final_train_error, is_cpu_run

__all__ = [
    "LAST_EPOCHS",
    "MNIST_TRAIN_IMAGES",
    "PAPER_BATCH",
    "PAPER_ITERATIONS",
    "FitSummary",
    "ParameterSpreads",
    "TrainingBudget",
    "cpu_per_wall",
    "fcn_family_fit",
    "head_widths",
    "parameter_spreads",
    "training_budget",
    "training_errors",
]

# The paper's training: 150k SGD iterations of 256 images (its appendix, as the issue quotes it).
PAPER_ITERATIONS = 150_000
PAPER_BATCH = 256
MNIST_TRAIN_IMAGES = 60_000

_Runs = list[dict[str, Any]]


@dataclass(frozen=True)
class ParameterSpreads:
    """How far apart the parameter counts of rows the paper compares lie, as fractions.

    Attributes:
        cnn_family: within a dataset of table 1 or TC, the CNN and ST-CNN standing rows (largest / smallest - 1).
        fcn_family: the FCN-family standing rows against that dataset's FCN (largest |rows / FCN - 1|).
        paper_kernels: the two ``paper-kernels`` rows against each other.
        second_transformer: what the addition grid's second (shared) transformer adds to the FCN.
        own_localisation: what localisation nets of their own add to the two-transformer model.
    """

    cnn_family: float
    fcn_family: float
    paper_kernels: float
    second_transformer: float
    own_localisation: float


def parameter_spreads(count: Callable[[Cell], int]) -> ParameterSpreads | None:
    """The spreads of :class:`ParameterSpreads`, with ``count(cell)`` the cell's trainable parameters.

    None where the grids lack a row it compares (grids cut down in tests).
    """
    cnn_spread, fcn_spread = 0.0, 0.0
    for grid in ("table1", "tc"):
        for dataset in sorted({cell.dataset for cell in GRIDS[grid]}):
            standing = [cell for cell in GRIDS[grid] if cell.dataset == dataset and not cell.tag]
            cnns = [count(c) for c in standing if c.model == "cnn" or c.model.startswith("st-cnn")]
            fcn = next((count(c) for c in standing if c.model == "fcn"), None)
            if len(cnns) > 1:
                cnn_spread = max(cnn_spread, max(cnns) / min(cnns) - 1)
            if fcn is not None:
                fcns = [count(c) for c in standing if is_fcn_family(c.model)]
                fcn_spread = max(fcn_spread, max(abs(n / fcn - 1) for n in fcns))
    kernels = [count(c) for c in GRIDS["table1"] if c.tag == "paper-kernels"]
    addition = {(c.model, c.tag): count(c) for c in GRIDS["addition"]}
    compared = [
        ("fcn", ""),
        ("2xst-fcn-affine", ""),
        ("2xst-fcn-affine", "e100"),
        ("2xst-fcn-affine", "e100-own-loc"),
    ]
    if not kernels or any(key not in addition for key in compared):
        return None
    return ParameterSpreads(
        cnn_family=cnn_spread,
        fcn_family=fcn_spread,
        paper_kernels=max(kernels) / min(kernels) - 1,
        second_transformer=addition["2xst-fcn-affine", ""] / addition["fcn", ""] - 1,
        own_localisation=addition["2xst-fcn-affine", "e100-own-loc"] / addition["2xst-fcn-affine", "e100"]
        - 1,
    )


@dataclass(frozen=True)
class TrainingBudget:
    """The paper's training against ours, as ratios (paper / ours).

    Attributes:
        updates: optimiser steps, against the default recipe.
        images: training images seen, against the default recipe.
        images_long: training images seen, against the 100-epoch (``e100``) recipe.
    """

    updates: float
    images: float
    images_long: float


def training_budget() -> TrainingBudget:
    """How much more training the paper's 150k iterations of 256 images are than our recipes."""
    paper_images = PAPER_ITERATIONS * PAPER_BATCH
    return TrainingBudget(
        updates=PAPER_ITERATIONS / (_flag(DEFAULT_RECIPE, "--epochs") * _steps_per_epoch(DEFAULT_RECIPE)),
        images=paper_images / _images_seen(DEFAULT_RECIPE),
        images_long=paper_images / _images_seen(LONG_FCN_RECIPE),
    )


def _images_seen(recipe: Recipe) -> int:
    """Training images a recipe's run sees on MNIST: its epochs of the images left after validation."""
    return _flag(recipe, "--epochs") * _train_images(recipe)


def _steps_per_epoch(recipe: Recipe) -> int:
    return math.ceil(_train_images(recipe) / _flag(recipe, "--batch-size"))


def _train_images(recipe: Recipe) -> int:
    """MNIST's training images less the recipe's validation split."""
    return MNIST_TRAIN_IMAGES - _flag(recipe, "--val-size")


def _flag(recipe: Recipe, flag: str) -> int:
    """The integer value of ``flag`` in the recipe's flags, else ``TrainConfig``'s default for it."""
    if flag in recipe.flags:
        return int(recipe.flags[recipe.flags.index(flag) + 1])
    field = flag.removeprefix("--").replace("-", "_")
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == field)
    if not isinstance(default, int):
        raise ValueError(f"{flag} has no integer default in TrainConfig, got {default!r}")
    return default


def cpu_per_wall(results: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    """CPU seconds per wall second of the CPU runs that recorded both, by OpenMP wait policy.

    Returns:
        ``"passive"`` (runs whose files record ``OMP_WAIT_POLICY=PASSIVE``) and ``"spinning"`` (the
        rest: the default policy, or files from before the policy was recorded) -> (lowest, highest,
        how many runs); a kind without runs is left out.
    """
    ratios: dict[str, list[float]] = {}
    for run in results:
        if not is_cpu_run(run) or run.get("cpu_time_s") is None or not run.get("wall_time_s"):
            continue
        policy = (run["machine"].get("openmp_env") or {}).get("OMP_WAIT_POLICY") or ""
        kind = "passive" if policy.upper() == "PASSIVE" else "spinning"
        ratios.setdefault(kind, []).append(run["cpu_time_s"] / run["wall_time_s"])
    return {kind: (min(values), max(values), len(values)) for kind, values in ratios.items()}


@dataclass(frozen=True)
class FitSummary:
    """The final-epoch fit of a set of runs, in percentage points.

    Attributes:
        runs: how many runs.
        largest_gap: the largest (validation - training) error.
        training_above: runs whose training error is above their validation error.
        fall: the least and the most the validation error fell over the last five epochs.
        epoch_seconds: the shortest and longest wall time per epoch (evaluation included).
    """

    runs: int
    largest_gap: float
    training_above: int
    fall: tuple[float, float]
    epoch_seconds: tuple[float, float]


LAST_EPOCHS = 5  # the window over which "still falling" is judged


def fcn_family_fit(by_cell: dict[tuple[str, str], _Runs], seed: int = 0) -> FitSummary | None:
    """The fit of ``seed``'s CPU run of every FCN-family standing cell of the paper's grids.

    None where no such run has the curves this needs.
    """
    gaps, falls, seconds = [], [], []
    for grid in ("table1", "tc", "addition"):
        for cell in GRIDS[grid]:
            run = _seed_run(by_cell.get((grid, cell.name), []), seed)
            if cell.tag or not is_fcn_family(cell.model) or run is None:
                continue
            curves = run.get("curves", {})
            train, val = curves.get("train_error") or [], curves.get("val_error") or []
            if len(val) <= LAST_EPOCHS or not train or None in (train[-1], val[-LAST_EPOCHS - 1], val[-1]):
                continue
            gaps.append(100 * (val[-1] - train[-1]))
            falls.append(100 * (val[-LAST_EPOCHS - 1] - val[-1]))
            seconds.append(run["wall_time_s"] / len(val))
    if not gaps:
        return None
    above = sum(gap < 0 for gap in gaps)
    return FitSummary(len(gaps), max(gaps), above, (min(falls), max(falls)), (min(seconds), max(seconds)))


def head_widths(cell: Cell) -> tuple[int, int] | None:
    """The features the cell's classifier head takes and its hidden units (its first linear layer).

    None for a model without such a head.
    """
    head = getattr(cell_model(cell), "head", None)
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None) if head is not None else None
    return None if first is None else (first.in_features, first.out_features)


def _seed_run(runs: _Runs, seed: int) -> dict[str, Any] | None:
    """The CPU run of ``seed`` among a cell's runs, if any."""
    return next((r for r in runs if r["seed"] == seed and is_cpu_run(r)), None)


def training_errors(runs: _Runs) -> tuple[float, float] | None:
    """The lowest and highest final training error (percent) of the runs; None if any lacks one."""
    finals = [final_train_error(run) for run in runs]
    known = [error for error in finals if error is not None]
    if not known or len(known) < len(finals):
        return None
    return 100 * min(known), 100 * max(known)
