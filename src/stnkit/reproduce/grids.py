"""The paper's experiments as grids of cells: one dataset, one model, one recipe, the paper's number.

The recipes are fixed here before any run of the grids they train (docs/training.md), and each
cell carries the test error that Jaderberg et al. 2015 report for it, where they report one.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "DEFAULT_RECIPE",
    "GRIDS",
    "GTSRB_RECIPE",
    "GTSRB_SELECT_10K_RECIPE",
    "GTSRB_SELECT_RECIPE",
    "HEADLINE_MODELS",
    "RECIPES",
    "SEEDS",
    "SHARED_DEVIATIONS",
    "Cell",
    "Recipe",
    "cells_of",
    "device_kind",
    "is_fcn_family",
    "is_selection",
]


@dataclass(frozen=True)
class Recipe:
    """A named set of ``stnkit train`` flags shared by many cells."""

    name: str
    flags: tuple[str, ...]
    description: str


# The library's default recipe (TrainConfig: Adam, one-cycle, 20 epochs, batch 128) with MNIST's last
# 10,000 training images held out for validation. It was tuned on RTS before validation existed (those
# runs looked at the test set, docs/results.md), which the report states; nothing in this grid is chosen
# on the test set.
DEFAULT_RECIPE = Recipe(
    "adam20-val10k",
    ("--epochs", "20", "--val-size", "10000"),
    "Adam, one-cycle to lr 4e-3, 20 epochs, batch 128, grad clip 5; 50k train / 10k validation",
)
# GTSRB (32x32, whole images), fixed before any GTSRB run: Sermanet & LeCun's jitter (+-2 px, scale
# 0.9-1.1, +-15 degrees) plus brightness and contrast 0.2, no perspective, on the fly; label smoothing 0.1;
# an exponential moving average of the weights (evaluated and saved); 30 epochs of the default optimiser.
# The selection phase holds out ~4,000 (or ~10,000) images as whole tracks (docs/training.md); the final
# phase trains on all 39,209 images and its test error is the one reported.
_GTSRB_FLAGS = ("--epochs", "30", "--augment", "gtsrb", "--label-smoothing", "0.1", "--ema", "0.999")
GTSRB_SELECT_RECIPE = Recipe(
    "gtsrb-aug30-val4k",
    (*_GTSRB_FLAGS, "--val-size", "4000"),
    "jitter, label smoothing 0.1, EMA 0.999, Adam one-cycle 30 epochs; ~4k validation images by tracks",
)
# Added 2026-12-03 after the first selection runs: 4,020 validation images (8 errors at 0.2%) could not
# tell two recipes apart, and came out far easier than the test set (0.20% against 0.67%). A quarter of
# the tracks (10,019 images in 334 tracks, two of every rare class's) gives ~2.5x the errors to count.
GTSRB_SELECT_10K_RECIPE = Recipe(
    "gtsrb-aug30-val10k",
    (*_GTSRB_FLAGS, "--val-size", "10000"),
    "jitter, label smoothing 0.1, EMA 0.999, Adam one-cycle 30 epochs; ~10k validation images by tracks",
)
# Added 2026-12-03 (declared in docs/results.md before the three-transformer cell's result): the
# standing run's training error reached ~0 while its validation error stalled, so more varied views:
# the preset's jitter plus a perspective jitter (corners moved by up to a tenth of the side).
_GTSRB_PERSPECTIVE_AUGMENT = "rotate=15,scale=0.1,shift=2,perspective=0.1,brightness=0.2,contrast=0.2"
_GTSRB_PERSPECTIVE_SELECT_RECIPE = Recipe(
    "gtsrb-persp30-val10k",
    ("--epochs", "30", "--augment", _GTSRB_PERSPECTIVE_AUGMENT, *_GTSRB_FLAGS[4:], "--val-size", "10000"),
    "jitter + perspective 0.1, label smoothing 0.1, EMA 0.999, Adam one-cycle 30 epochs; ~10k validation",
)
# Added 2026-12-04 after seed 0 of every FCN-family cell, from its training and validation errors: all
# 23 underfit (final training error at most 0.6 points below the validation error, which still fell in
# the last five epochs) at 2-10 s an epoch, so these networks get five times the epochs.
LONG_FCN_RECIPE = Recipe(
    "adam100-val10k",
    ("--epochs", "100", "--val-size", "10000"),
    "Adam, one-cycle to lr 4e-3, 100 epochs, batch 128, grad clip 5; 50k train / 10k validation",
)
# Added 2026-12-04 after the perspective cell (declared in docs/results.md before it ran): neither more
# transformers nor more jitter lowered the validation error while the training error stays ~0, so the
# lever is the weights' own regularisation, decoupled weight decay (biases and norm scales exempt).
_GTSRB_WEIGHT_DECAY_SELECT_RECIPE = Recipe(
    "gtsrb-aug30-adamw-val10k",
    (*_GTSRB_FLAGS, "--optimizer", "adamw", "--weight-decay", "0.05", "--val-size", "10000"),
    "as gtsrb-aug30-val10k, with AdamW weight decay 0.05 (biases exempt)",
)
GTSRB_RECIPE = Recipe(
    "gtsrb-aug30",
    _GTSRB_FLAGS,
    "jitter, label smoothing 0.1, EMA 0.999, Adam one-cycle 30 epochs; all 39,209 training images",
)
RECIPES = {
    recipe.name: recipe
    for recipe in (
        DEFAULT_RECIPE,
        LONG_FCN_RECIPE,
        GTSRB_SELECT_RECIPE,
        GTSRB_SELECT_10K_RECIPE,
        _GTSRB_PERSPECTIVE_SELECT_RECIPE,
        _GTSRB_WEIGHT_DECAY_SELECT_RECIPE,
        GTSRB_RECIPE,
    )
}

# How the MNIST grids' standing rows differ from the paper (docs/training.md), one item each; a lever
# row's tag names what it changes on top of them (the report explains the tags).
SHARED_DEVIATIONS = (
    "5x5 convolutions (paper: 9x9, then 7x7); a transformer's output cropped to 28x28 on the 42x42 and "
    "60x60 inputs (paper: average-pooled by 2 on RTS and TC)",
    "Adam, one-cycle schedule to a peak learning rate of 4e-3, 20 epochs of batch 128, gradient norm clipped "
    "at 5 (paper: SGD, learning rate 0.01 divided by 10 every 50k of 150k iterations, batch 256)",
    "trained on the first 50,000 of MNIST's training images; the last 10,000 are the validation split",
    "the distorted datasets are stnkit's, generated from the paper's description (docs/data.md), not the "
    "paper's own images",
)


@dataclass(frozen=True)
class Cell:
    """One dataset x model entry of a grid, with the paper's test error where it reports one.

    Attributes:
        grid: the grid it belongs to (a key of :data:`GRIDS`).
        dataset: a dataset name of :func:`stnkit.data.list_datasets`.
        model: a model name of :func:`stnkit.models.list_models`.
        paper_error: the paper's test error in percent, None where it reports none.
        recipe: the ``stnkit train`` flags it trains with.
        model_kwargs: builder arguments beyond those the dataset implies.
        tag: tells apart cells of one dataset and model, e.g. ``"select"`` for a validation phase.
    """

    grid: str
    dataset: str
    model: str
    paper_error: float | None  # percent
    recipe: Recipe = DEFAULT_RECIPE
    model_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    tag: str = ""

    @property
    def name(self) -> str:
        """``DATASET-MODEL[-TAG]``, unique within a grid (the name ``--cells`` matches)."""
        # gtsrb-cnn on gtsrb is "gtsrb-cnn", not "gtsrb-gtsrb-cnn"
        base = self.model if self.model.startswith(f"{self.dataset}-") else f"{self.dataset}-{self.model}"
        return base + (f"-{self.tag}" if self.tag else "")

    def run_name(self, seed: int, device: str = "cpu") -> str:
        """The name of the cell's run for ``seed``: its run folder's and its result file's.

        A run on a GPU (``device`` ``"cuda"`` or ``"cuda:N"``) ends in ``-cuda``: CPU and GPU
        runs of one cell and seed are different measurements and never take each other's place.
        """
        suffix = "" if device == "cpu" else f"-{device_kind(device)}"
        return f"{self.name}-s{seed}{suffix}"

    def train_args(self, seed: int) -> list[str]:
        """What ``stnkit train`` needs to train the cell at ``seed``, less where and how fast it runs.

        The command of a run (:func:`stnkit.reproduce.cell_result` records it) is these arguments
        with ``--threads``, ``--out``, ``--no-progress`` and, where set, ``--data-root`` and
        ``--device`` added: what the result file holds is checked against them when it is read.
        """
        args = ["--dataset", self.dataset, "--model", self.model, "--seed", str(seed), *self.recipe.flags]
        if self.model_kwargs:
            args += ["--model-kwargs", json.dumps(self.model_kwargs)]
        return args

    @property
    def is_headline(self) -> bool:
        """Whether it is one of the comparisons the paper is about (an untagged CNN or ST-CNN affine).

        A tagged variant of a headline model (a lever such as ``rts-cnn-paper-kernels``) is not: it
        runs after the headline cells, never between their seeds.
        """
        return self.model in HEADLINE_MODELS and not self.tag


def device_kind(device: str) -> str:
    """``"cpu"`` or ``"cuda"``: what a result records of the device a run asked for."""
    return device.split(":")[0]


# Jaderberg et al. 2015, table 1 (left) and section 4.1: test error in percent.
_TABLE1 = {
    "fcn": {"r": 2.1, "rts": 5.2, "p": 3.1, "e": 3.2},
    "cnn": {"r": 1.2, "rts": 0.8, "p": 1.5, "e": 1.4},
    "st-fcn-affine": {"r": 1.2, "rts": 0.8, "p": 1.5, "e": 2.7},
    "st-fcn-projective": {"r": 1.3, "rts": 0.9, "p": 1.4, "e": 2.6},
    "st-fcn-tps": {"r": 1.1, "rts": 0.8, "p": 1.4, "e": 2.4},
    "st-cnn-affine": {"r": 0.7, "rts": 0.5, "p": 0.8, "e": 1.2},
    "st-cnn-projective": {"r": 0.8, "rts": 0.6, "p": 0.8, "e": 1.3},
    "st-cnn-tps": {"r": 0.7, "rts": 0.5, "p": 0.8, "e": 1.1},
}
_TC = {"fcn": 13.2, "cnn": 3.5, "st-fcn-affine": 2.0, "st-cnn-affine": 1.7}
# The issue that asked for this grid gives one 2xST-FCN number (5.8) and asks for the affine,
# projective and TPS variants; only the affine one carries it here.
_ADDITION = {
    "fcn": 47.7,
    "cnn": 14.7,
    "st-fcn-affine": 18.5,
    "2xst-fcn-affine": 5.8,
    "2xst-fcn-projective": None,
    "2xst-fcn-tps": None,
}
# The comparison the paper is about: the CNN against the ST-CNN (affine); these cells run first.
HEADLINE_MODELS = ("cnn", "st-cnn-affine")
# The seeds of every final cell: the paper reports each result as the mean of three runs.
SEEDS = (0, 1, 2)


def _table1() -> list[Cell]:
    # Headline cells (CNN vs ST-CNN affine on each dataset) first, then the rest, then levers.
    datasets = ("rts", "r", "p", "e")
    headline = [Cell("table1", d, m, _TABLE1[m][d]) for d in datasets for m in HEADLINE_MODELS]
    others = [m for m in _TABLE1 if m not in HEADLINE_MODELS]
    rest = [Cell("table1", d, m, _TABLE1[m][d]) for m in others for d in datasets]
    # Added 2026-12-03 after the headline runs, from their training and validation errors: the RTS
    # CNN underfits (final training error 1.6-1.7%, as high as its validation error) and, matched to
    # the cropping ST-CNN's budget, classifies 3,136 features through 49 hidden units. This row is the
    # paper's classifier instead (9x9 and 7x7 kernels, budget of the uncropped ST-CNN: 330k
    # parameters, 141 hidden units); the report shows it beside the standing row, never in its place.
    paper_kernels = {"kernel_sizes": [9, 7], "crop_to": None}
    cnn_paper_kernels = Cell(
        "table1", "rts", "cnn", _TABLE1["cnn"]["rts"], model_kwargs=dict(paper_kernels), tag="paper-kernels"
    )
    # Added 2026-12-04 at 23:00 UTC, declared in docs/paper-results.md before it ran: the ST-CNN's
    # counterpart of the row above (the issue asks for both rows wherever the paper's architecture is
    # run beside ours): the same kernels behind an uncropped transformer, 329k parameters, the budget
    # the CNN's row was matched to. The paper also average-pools the transformer's output by 2 on RTS;
    # this row does not.
    st_cnn_paper_kernels = replace(
        cnn_paper_kernels,
        model="st-cnn-affine",
        paper_error=_TABLE1["st-cnn-affine"]["rts"],
        model_kwargs=dict(paper_kernels),
    )
    return [*headline, *rest, cnn_paper_kernels, st_cnn_paper_kernels, *_longer_fcn_levers(rest)]


def is_fcn_family(model: str) -> bool:
    """The fully connected networks: ``fcn``, ``st-fcn-*`` and ``2xst-fcn-*``."""
    return "fcn" in model.split("-")


def _longer_fcn_levers(cells: list[Cell]) -> list[Cell]:
    """A lever row per FCN-family cell: the same cell trained for 100 epochs (LONG_FCN_RECIPE)."""
    return [replace(c, recipe=LONG_FCN_RECIPE, tag="e100") for c in cells if is_fcn_family(c.model)]


def _addition() -> list[Cell]:
    paper = [Cell("addition", "mnist-add", m, e) for m, e in _ADDITION.items()]
    # Added 2026-12-04 from the 100-epoch rows' transformers, not their test errors: measured over
    # test images (channel_following), both heads of every 2xST-FCN follow the same digit (affine
    # and projective the second channel's, TPS the first's), so the pair never splits the work. Two
    # independent transformers, each with a localisation net of its own (as in two separate spatial
    # transformers, and in a public re-implementation of this experiment), start from different
    # localisation features; the report shows this row beside the shared-net ones.
    two_affine = next(cell for cell in paper if cell.model == "2xst-fcn-affine")
    own_localization = replace(
        two_affine, recipe=LONG_FCN_RECIPE, model_kwargs={"shared_localization": False}, tag="e100-own-loc"
    )
    return [*_with_fcn_levers(paper), own_localization]


def _gtsrb() -> list[Cell]:
    # The ST-CNN's recipe checked on the validation split first, then trained on everything; then the
    # baseline under the same recipe; then the alternatives' selection runs. Every cell normalises
    # contrast per image (standardize) except the "lcn" ones, which use the GTSRB records' local
    # contrast normalisation instead (LocalContrastNorm; added 2026-12-03, after the runs above).
    # The "val10k" cells (added 2026-12-03, after all of the above had run) repeat the selection on
    # the larger validation split: the recipe as it stands first, then the three-transformer network.
    # The "persp" cell (declared in docs/results.md before the three-transformer cell's result) adds a
    # perspective jitter to the network the rule kept: the one-transformer ST-CNN (the three-transformer
    # cell's validation error, 0.65%, was above the standing 0.53%). The "wd" cell (added 2026-12-04,
    # after the perspective cell lost under the rule) tries decoupled weight decay instead. The "wide"
    # cell (declared in docs/results.md on 2026-12-04 before the weight-decay cell ran) is the records'
    # other difference: 1.5 times the filters per conv stage. It won under the rule (validation
    # 0.41% and cross-entropy 0.1312 against the standing 0.53% and 0.1315), so "wide" (added
    # 2026-12-04 after that result) is the wide network's final run, trained on everything.
    standardize, local = {"standardize": True}, {"local_contrast": True}
    wide = {"standardize": True, "channels": [48, 96, 192]}

    def cell(model: str, tag: str, recipe: Recipe, kwargs: dict[str, Any] = standardize) -> Cell:
        return Cell("gtsrb", "gtsrb", model, None, recipe=recipe, model_kwargs=kwargs, tag=tag)

    return [
        cell("gtsrb-st-cnn", "select", GTSRB_SELECT_RECIPE),
        cell("gtsrb-st-cnn", "", GTSRB_RECIPE),
        cell("gtsrb-cnn", "", GTSRB_RECIPE),
        cell("gtsrb-cnn", "select", GTSRB_SELECT_RECIPE),
        cell("gtsrb-multi-st-cnn", "select", GTSRB_SELECT_RECIPE),
        cell("gtsrb-st-cnn", "lcn-select", GTSRB_SELECT_RECIPE, local),
        cell("gtsrb-st-cnn", "val10k-select", GTSRB_SELECT_10K_RECIPE),
        cell("gtsrb-multi-st-cnn", "val10k-select", GTSRB_SELECT_10K_RECIPE),
        cell("gtsrb-st-cnn", "persp-val10k-select", _GTSRB_PERSPECTIVE_SELECT_RECIPE),
        cell("gtsrb-st-cnn", "wd-val10k-select", _GTSRB_WEIGHT_DECAY_SELECT_RECIPE),
        cell("gtsrb-st-cnn", "wide-val10k-select", GTSRB_SELECT_10K_RECIPE, wide),
        cell("gtsrb-st-cnn", "wide", GTSRB_RECIPE, wide),
    ]


def is_selection(cell: Cell) -> bool:
    """Whether the cell is a selection run (trained without its validation split, judged on it only)."""
    return cell.tag == "select" or cell.tag.endswith("-select")


def _with_fcn_levers(cells: list[Cell]) -> list[Cell]:
    """The paper's cells, then the longer-schedule lever of each FCN-family one."""
    return [*cells, *_longer_fcn_levers(cells)]


GRIDS: dict[str, list[Cell]] = {
    "table1": _table1(),
    "gtsrb": _gtsrb(),
    "tc": _with_fcn_levers([Cell("tc", "tc", m, e) for m, e in _TC.items()]),
    "addition": _addition(),
    # Plain MNIST is not in the paper's table: these are the CNN and ST-CNN trained without distortions,
    # whose error under rotation, scale and shift (`stnkit robustness`) is set beside the RTS models'.
    "mnist": [Cell("mnist", "mnist", m, None) for m in HEADLINE_MODELS],
}


def cells_of(grid: str, pattern: str | None = None) -> list[Cell]:
    """The cells of ``grid`` (or of every grid for ``"all"``) whose name matches the glob ``pattern``.

    Raises:
        ValueError: ``grid`` is neither a key of :data:`GRIDS` nor ``"all"``.

    Example:
        >>> {cell.name: cell.paper_error for cell in cells_of("table1", "r-st-cnn-*")}
        {'r-st-cnn-affine': 0.7, 'r-st-cnn-projective': 0.8, 'r-st-cnn-tps': 0.7}
    """
    if grid != "all" and grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; valid: {[*GRIDS, 'all']}")
    names = list(GRIDS) if grid == "all" else [grid]
    cells = [cell for name in names for cell in GRIDS[name]]
    if pattern:
        cells = [cell for cell in cells if fnmatch.fnmatch(cell.name, pattern)]
    return cells
