"""The report of the grids (docs/paper-results.md): our errors beside the paper's, and pictures.

:func:`render_report` makes the page from result files alone (:func:`stnkit.reproduce.load_results`);
:func:`render_pictures` draws what each transformer learned from the run folders that exist, into
``img/paper/`` beside the page, and remembers each picture's caption so that a picture whose run
folder is gone stays in the report.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from torch import Tensor

from stnkit.data import dataset_info, first_test_images, run_data_root
from stnkit.engine import CHECKPOINT_NAME
from stnkit.files import atomic_write_text
from stnkit.models import ParallelSpatialTransformer, count_parameters, create_model
from stnkit.reproduce.grids import GRIDS, SEEDS, SHARED_DEVIATIONS, Cell, is_selection
from stnkit.reproduce.results import format_mean_sd, results_by_cell
from stnkit.runs import load_run

__all__ = [
    "CAPTIONS_NAME",
    "PICTURE_DIR",
    "PICTURE_IMAGES",
    "UNDERFIT_RATIO",
    "Picture",
    "RobustnessFigure",
    "cell_parameters",
    "final_fit",
    "next_lever",
    "render_pictures",
    "render_report",
]

PICTURE_DIR = Path("img") / "paper"  # beside the report: docs/img/paper/<dataset>-<model>.png
CAPTIONS_NAME = "captions.json"  # beside the pictures: the caption each was drawn with
PICTURE_IMAGES = 8  # the first 8 images of each canonical test set, the same in every picture
# Test images over which a picture of parallel transformers measures which channel each head follows.
FOLLOWING_IMAGES = 1000
# A final training error at least this fraction of the validation error counts as underfitting
# (:func:`next_lever`); below it, the gap between them is the thing to close.
UNDERFIT_RATIO = 0.8

# Grids with a section of their own in the report instead of the paper-style table.
_OWN_SECTION = ("gtsrb", "mnist")

_ByCell = dict[tuple[str, str], list[dict[str, Any]]]  # (grid, cell name) -> its results by seed


@dataclass(frozen=True)
class Picture:
    """What the report shows for one transformer cell: a picture (path relative to the report) or why not."""

    link: str | None
    caption: str


@dataclass(frozen=True)
class RobustnessFigure:
    """A ``stnkit robustness`` sweep for the report: error against rotation, scale and shift.

    Attributes:
        summary: its ``robustness.json`` (the digits, and per model where it comes from).
        table: its ``robustness.md`` (a table per sweep).
        image: the link to its plot, relative to the report; None without one.
        folder: where its files are, as the report names it.
    """

    summary: dict[str, Any]
    table: str
    image: str | None
    folder: str = "results/robustness/"


# --- the pictures ---------------------------------------------------------------------------------


def _has_transformer(cell: Cell) -> bool:
    # st-fcn-*, st-cnn-*, 2xst-fcn-affine: the registry's names of models with an input transformer.
    return "st-" in cell.model


def _run_seeds(run_root: Path, cell: Cell) -> list[int]:
    """Seeds of the cell with a checkpoint under ``run_root`` (its grid's run folder), ascending."""
    prefix = f"{cell.name}-s"
    seeds = []
    for folder in run_root.glob(f"{prefix}*"):
        suffix = folder.name[len(prefix) :]
        if suffix.isdigit() and (folder / CHECKPOINT_NAME).is_file():
            seeds.append(int(suffix))
    return sorted(seeds)


def _picture_seed(seeds: list[int], finished: set[int]) -> int:
    """A finished run before an unfinished one; seed 0 first, then the lowest."""
    return min(seeds, key=lambda seed: (seed not in finished, seed))


def render_pictures(
    results: list[dict[str, Any]],
    runs: Path,
    image_dir: Path,
    *,
    data_root: str | None,
    link_prefix: Path = PICTURE_DIR,
) -> dict[tuple[str, str], Picture]:
    """For every transformer cell with a run folder, draw its transformer on fixed test images.

    The picture (:func:`stnkit.viz.plot_transformer`: inputs with the sampling grid, beside the
    outputs) shows the first :data:`PICTURE_IMAGES` images of the cell's canonical test set through
    the checkpoint of seed 0 (else the lowest seed), preferring runs that have finished.

    Args:
        results: the result files (:func:`stnkit.reproduce.load_results`): which runs have finished.
        runs: the run folders, ``runs/<grid>/<cell>-s<seed>/``.
        image_dir: where the pictures go, with their captions in :data:`CAPTIONS_NAME`.
        data_root: the data root (default: each run's own).
        link_prefix: the pictures' folder as the report links it.

    Returns:
        (grid, cell name) -> :class:`Picture`, for every cell of a transformer model.
    """
    from stnkit.viz import plot_transformer, transformer_views

    finished: dict[tuple[str, str], set[int]] = {}
    for result in results:
        finished.setdefault((result["grid"], result["cell"]), set()).add(int(result["seed"]))
    pictures = {}
    # Captions of the pictures drawn so far: a picture whose run folder is gone (another machine, an
    # earlier session) stays in the report under its old caption instead of vanishing.
    captions_path = image_dir / CAPTIONS_NAME
    captions: dict[str, str] = json.loads(captions_path.read_text()) if captions_path.is_file() else {}
    for grid, cells in GRIDS.items():
        for cell in filter(_has_transformer, cells):
            seeds = _run_seeds(runs / grid, cell)
            name = f"{cell.name}.png"
            if not seeds and name in captions and (image_dir / name).is_file():
                caption = f"{captions[name]} (drawn earlier; its run folder is not here)"
                pictures[grid, cell.name] = Picture((link_prefix / name).as_posix(), caption)
                continue
            if not seeds:
                where = runs / grid / f"{cell.name}-s*" / CHECKPOINT_NAME
                pictures[grid, cell.name] = Picture(None, f"no run folder yet (`{where.as_posix()}`)")
                continue
            done = finished.get((grid, cell.name), set())
            seed = _picture_seed(seeds, done)
            checkpoint = runs / grid / cell.run_name(seed) / CHECKPOINT_NAME
            model, state, config = load_run(checkpoint)
            root = run_data_root(data_root, config.data_root)
            images = first_test_images(cell.dataset, PICTURE_IMAGES, root=root)
            title = f"{cell.model} on {cell.dataset}, seed {seed}, epoch {state['epoch']}"
            plot_transformer(images, transformer_views(model, images), image_dir / name, title=title)
            caption = title if seed in done else f"{title} (unfinished run: no result file yet)"
            if isinstance(model.stn, ParallelSpatialTransformer):
                following_images = first_test_images(cell.dataset, FOLLOWING_IMAGES, root=root)
                caption += _following_caption(model.stn.channel_following(following_images))
            pictures[grid, cell.name] = Picture((link_prefix / name).as_posix(), caption)
            captions[name] = caption
    if captions:
        atomic_write_text(captions_path, json.dumps(captions, indent=1, sort_keys=True) + "\n")
    return pictures


def _following_caption(following: Tensor) -> str:
    """``following`` (heads x channels, :meth:`ParallelSpatialTransformer.channel_following`) in words."""
    heads = "; ".join(
        f"head {i + 1}: " + " / ".join(f"{value:.2f}" for value in row.tolist())
        for i, row in enumerate(following)
    )
    return (
        f". Where each head looks against where each channel's digit is (correlation over the first "
        f"{FOLLOWING_IMAGES:,} test images, channels {' / '.join(str(c + 1) for c in range(following.shape[1]))}): "
        f"{heads}"
    )


def _pictures_section(pictures: dict[tuple[str, str], Picture]) -> list[str]:
    lines = [
        "## What the transformers learned",
        "",
        f"The first {PICTURE_IMAGES} images of each canonical test set, with the sampling grid of the",
        "trained transformer drawn over them, beside its outputs (seed 0's run where it exists). For",
        "two transformers in parallel (MNIST addition) the caption also says which digit each follows:",
        "the correlation, over test images, between the centre of the head's sampling grid and the",
        "centre of each channel's digit (`ParallelSpatialTransformer.channel_following`). Heads that",
        "took one digit each show one value near 1 per head, for different channels.",
        "",
    ]
    for grid, cells in GRIDS.items():
        by_dataset: dict[str, list[Cell]] = {}
        for cell in filter(_has_transformer, cells):
            by_dataset.setdefault(cell.dataset, []).append(cell)
        for dataset, dataset_cells in by_dataset.items():
            lines += [f"### {grid}: {dataset}", ""]
            for cell in dataset_cells:
                picture = pictures.get((grid, cell.name))
                if picture is None:
                    continue
                label = _label(cell)
                if picture.link is None:
                    lines += [f"- {label}: {picture.caption}.", ""]
                else:
                    lines += [
                        f"- {label}: {picture.caption}",
                        "",
                        f"  ![{cell.name}]({picture.link})",
                        "",
                    ]
    return lines


# --- the page -------------------------------------------------------------------------------------


def render_report(
    results: list[dict[str, Any]],
    pictures: dict[tuple[str, str], Picture] | None = None,
    robustness: RobustnessFigure | None = None,
) -> str:
    """docs/paper-results.md from the result files: our mean ± sd over seeds beside the paper's number.

    Args:
        results: the result files (:func:`stnkit.reproduce.load_results`).
        pictures: the transformers' pictures (:func:`render_pictures`); None leaves their section out.
        robustness: the pose sweep of the paper's argument; None leaves its section out.

    Returns:
        The page's Markdown.
    """
    lines = [
        "# The paper's experiments, reproduced",
        "",
        "Rendered by `stnkit reproduce --report` from the result files under `results/` (one per cell and",
        "seed, written by `stnkit reproduce`); edit those runs, not this page. Test error in percent on the",
        "canonical test sets (bit-identical on every machine, docs/data.md), of the **final** epoch; mean ±",
        f"sample standard deviation (n - 1) over the seeds listed. A row with fewer than the {len(SEEDS)} seeds",
        f"of a cell ({', '.join(map(str, SEEDS))}) says so beside its number, e.g. `0.79 (1 of {len(SEEDS)} seeds)`:",
        "one seed's error alone. In the MNIST grids nothing was selected on the test",
        "set: the recipe is the library's default, fixed before these runs, with a validation split of",
        "MNIST's last 10,000 training images (its error is in the result files). The default recipe",
        "itself was tuned on RTS in earlier exploratory runs that looked at the test error",
        "(docs/results.md), so the RTS rows are not strictly free of test-set selection. The GTSRB",
        "section says what was and was not chosen there.",
        "",
        f"Shared deviations from the paper: {SHARED_DEVIATIONS}.",
        "",
    ]
    by_cell = results_by_cell(results)
    for grid, cells in GRIDS.items():
        if grid in _OWN_SECTION:
            continue  # not in the paper: their own sections below
        lines += [f"## {grid}", "", *_error_table(grid, cells, by_cell), ""]
    lines += [*_goal_summary(by_cell), ""]
    lines += [
        "Each row's exact command, per-epoch validation and test curves, images/s, torch version and git",
        "commit are in its result files. Wall time includes evaluating the validation and test sets after",
        "every epoch, on a machine that was at times shared with other work (so times are upper bounds).",
        "CPU minutes are the training process's own CPU time over all its threads (2 here), which other",
        "work on the machine inflates less than the wall time, though still (OpenMP's waiting threads",
        'spin: docs/benchmarks.md, "Training beside other work"; result files since 2026-12-04 record',
        "the OpenMP variables a run had); alone on the 2-core machine a run spends 1.7-2 CPU",
        "minutes per minute (p-cnn seed 1: 16.8 in 9.6), so the goal of 15 minutes of 2-core time per",
        "cell is at most 30 CPU minutes. Runs started, or resumed from a checkpoint, before the code",
        "counted CPU time did not count it; where only some of a cell's seeds did, the column gives",
        "their mean and names them.",
        "",
        "`parameters` counts the trainable parameters of the cell's model as `stnkit train` builds it",
        "for the dataset (`stnkit.reproduce.cell_parameters`). The paper compares models of comparable",
        "size: within a dataset of table 1 or TC, the CNN and ST-CNN rows lie within 2.5% of each",
        "other and the FCN-family rows within 1% of the FCN (the `paper-kernels` rows aside: both have",
        "the uncropped ST-CNN's budget, within 0.5% of each other). The addition grid's two-transformer",
        "rows do not keep the rule: the second transformer adds 60% to the FCN's count, and",
        "localisation nets of their own (the `own-loc` row) another 21%.",
        "",
        "`train / validation` is the final epoch's training error (the running error over that epoch's",
        "distorted images, in training mode) and validation error, means over the seeds. Where a row is",
        "above the paper's error, `next lever` says what to try next, by one rule for every row",
        "(`stnkit.reproduce.next_lever`, written on 2026-12-04 with these rows in view; it reads their",
        "training and validation errors only). A standing cell with lever rows points at them;",
        f"otherwise a training error of at least {UNDERFIT_RATIO:.0%} of the validation error means",
        "the network underfits (train longer, or wider: the paper's 150k SGD iterations of 256 images",
        "are 19x the updates of our 20 epochs of 50,000 images in batches of 128, 38x their images, and",
        "8x the images of a 100-epoch row), a lower one a generalisation gap (regularise, or vary the",
        "training images more). One lever was added after the headline runs, from their",
        "training and validation errors, not the test error: the RTS CNN underfits (final training",
        "error 1.6-1.7%, as high as its validation error) and, its budget matched to the cropping",
        "ST-CNN's, classifies 3,136 features through 49 hidden units. `cnn (paper-kernels)` is the",
        "paper's classifier instead (9x9 and 7x7 kernels; the budget of the uncropped ST-CNN: 330k",
        "parameters, 141 hidden units), shown beside the standing row, never in its place.",
        "`st-cnn-affine (paper-kernels)` is its ST-CNN counterpart, declared on 2026-12-04 before it",
        "ran (the issue asks for both rows wherever the paper's architecture is run beside ours): the",
        "same kernels behind an uncropped transformer, 329k parameters; the paper also average-pools",
        "the transformer's output by 2 on RTS, which this row does not.",
        "A second lever was added after seed 0 of every FCN-family cell (FCN, ST-FCN, 2xST-FCN), again",
        "from training and validation errors: all 23 underfit (final training error at most 0.6 points",
        "below the validation error, and above it in 11; validation error still falling by 0.1-2.2 points",
        "over the last five epochs) at 2-10 s an epoch. The `(e100)` rows train the same cell for 100",
        "epochs instead of 20 (`adam100-val10k`), beside the standing rows, never in their place.",
        "",
    ]
    lines += _gtsrb_section(by_cell)
    lines += _mnist_section(by_cell)
    if robustness is not None:
        lines += _robustness_section(robustness)
    if pictures is not None:
        lines += _pictures_section(pictures)
    return "\n".join(lines)


def _error_table(grid: str, cells: list[Cell], by_cell: _ByCell) -> list[str]:
    """A row per cell: the paper's test error (blank where it reports none) beside ours."""
    lines = [
        "| dataset | model | parameters | paper | ours | ours - paper | seeds | minutes per run "
        "| CPU minutes per run | machine | train / validation | next lever |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|---|",
    ]
    for cell in cells:
        paper = "" if cell.paper_error is None else f"{cell.paper_error:.1f}"
        rows = _device_rows(_label(cell), by_cell.get((grid, cell.name), []))
        parameters = f"{cell_parameters(cell):,}"
        if not rows:
            lines.append(
                f"| {cell.dataset} | {_label(cell)} | {parameters} | {paper} | not run yet | | | | | | | |"
            )
        for model, runs in rows:
            ours = _test_errors(runs)
            mean = _mean_test_percent(runs)
            above_paper = cell.paper_error is not None and mean > cell.paper_error
            gap = "" if cell.paper_error is None else f"{mean - cell.paper_error:+.2f}"
            seeds = ", ".join(str(r["seed"]) for r in runs)
            fit = final_fit(runs)
            lever = next_lever(cell, cells, fit) if above_paper else ""
            lines.append(
                f"| {cell.dataset} | {model} | {parameters} | {paper} | {ours} | {gap} | {seeds} | {_minutes(runs)} | "
                f"{_cpu_minutes(runs)} | {_machines(runs)} | {_format_fit(fit)} | {lever} |"
            )
    return lines


# The budget per cell: 15 minutes of a 2-core machine, i.e. at most 30 CPU minutes.
GOAL_CPU_MINUTES = 30.0


# The goal line's rows: standing cells (untagged) and their lever rows, each with every seed or not.
_GOAL_ROW_KINDS = ("standing, every seed", "standing, fewer seeds", "lever, every seed", "lever, fewer seeds")


def _goal_summary(by_cell: _ByCell) -> list[str]:
    """How many finished CPU rows with a paper number meet the goal (error and budget), as a table.

    Standing rows and lever rows are counted apart (a lever row is a variant beside its standing
    cell, never in its place), and so are rows with fewer seeds than :data:`SEEDS`.
    """
    # kind -> [rows, at or below the paper, CPU time recorded for every seed, within budget, both]
    tally = {kind: [0, 0, 0, 0, 0] for kind in _GOAL_ROW_KINDS}
    for grid, cells in GRIDS.items():
        if grid in _OWN_SECTION:
            continue
        for cell in cells:
            runs = [r for r in by_cell.get((grid, cell.name), []) if r.get("device", "cpu") == "cpu"]
            if cell.paper_error is None or not runs:
                continue
            counts = tally[_goal_row_kind(cell, runs)]
            good = _mean_test_percent(runs) <= cell.paper_error
            counts[0] += 1
            counts[1] += good
            cpu = [r["cpu_time_s"] for r in runs if r.get("cpu_time_s") is not None]
            if len(cpu) == len(runs):
                cheap = statistics.fmean(cpu) / 60 <= GOAL_CPU_MINUTES
                counts[2] += 1
                counts[3] += cheap
                counts[4] += good and cheap
    total = [sum(column) for column in zip(*tally.values(), strict=True)]
    budget = f"{GOAL_CPU_MINUTES:.0f} CPU minutes"
    lines = [
        f"The goal: every cell at or below the paper's error within 15 minutes of 2-core time ({budget}).",
        "Counted over the CPU rows above with a paper number; lever rows (a tag in brackets) count apart",
        f"from the standing cells they stand beside, and rows with fewer than {len(SEEDS)} seeds apart from",
        "those with every seed. The budget is judged on the rows whose every seed recorded its CPU time.",
        "",
        f"| rows | count | at or below the paper | CPU time recorded | within {budget} | both |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, counts in [*tally.items(), ("all", total)]:
        lines.append(f"| {kind} | " + " | ".join(str(n) for n in counts) + " |")
    return lines


def _goal_row_kind(cell: Cell, runs: list[dict[str, Any]]) -> str:
    """Which of :data:`_GOAL_ROW_KINDS` a row is."""
    role = "lever" if cell.tag else "standing"
    seeds = "every seed" if _has_every_seed(runs) else "fewer seeds"
    return f"{role}, {seeds}"


def _has_every_seed(runs: list[dict[str, Any]]) -> bool:
    """Whether a row has as many runs as a cell has :data:`SEEDS` (else the report says so)."""
    return len(runs) >= len(SEEDS)


def _mean_test_percent(runs: list[dict[str, Any]]) -> float:
    """The runs' mean final test error, in percent."""
    return 100 * statistics.fmean(r["final_test_error"] for r in runs)


def _test_errors(runs: list[dict[str, Any]]) -> str:
    """The runs' final test errors, mean ± sd, marked where the row has fewer seeds than a cell's."""
    errors = format_mean_sd([r["final_test_error"] for r in runs])
    if not _has_every_seed(runs):
        errors += f" ({len(runs)} of {len(SEEDS)} seeds)"
    return errors


def final_fit(runs: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The final epoch's training and validation errors in percent, means over the runs.

    None where a run lacks either (results from before the curves were kept, runs without a
    validation split). The training error is the running one of the last epoch, on that epoch's
    distorted or augmented images, in training mode.
    """
    pairs = []
    for run in runs:
        train_curve = run.get("curves", {}).get("train_error") or [None]
        train, val = train_curve[-1], run.get("final_val_error")
        if train is None or val is None:
            return None
        pairs.append((100 * train, 100 * val))
    return statistics.fmean(p[0] for p in pairs), statistics.fmean(p[1] for p in pairs)


def next_lever(cell: Cell, grid_cells: list[Cell], fit: tuple[float, float] | None) -> str:
    """What to try next for a cell above the paper's error: one rule for every row, reading no test error.

    A standing cell that has lever rows (the same dataset and model with a tag) points at them.
    Otherwise the final errors decide: a training error of at least :data:`UNDERFIT_RATIO` times the
    validation error means the network underfits (lever: longer training or a wider network), a
    lower one a generalisation gap (lever: regularisation or more varied training images).
    """
    if not cell.tag:
        levers = [c.tag for c in grid_cells if c.tag and (c.dataset, c.model) == (cell.dataset, cell.model)]
        if levers:
            return ", ".join(f"the ({tag}) row" for tag in levers)
    if fit is None:
        return "no training or validation error recorded"
    train, val = fit
    if train >= UNDERFIT_RATIO * val:
        return "underfits: train longer or wider"
    return "generalisation gap: regularise or vary the training images"


def cell_parameters(cell: Cell) -> int:
    """The trainable parameters of the cell's model, built for its dataset as ``stnkit train`` builds it.

    Example:
        >>> rts_cnn = next(cell for cell in GRIDS["table1"] if cell.name == "rts-cnn")
        >>> cell_parameters(rts_cnn)
        206309
    """
    return _parameters(cell.model, cell.dataset, json.dumps(cell.model_kwargs, sort_keys=True))


@cache  # a report asks for each of ~80 cells once per table; many share a model and dataset
def _parameters(model: str, dataset: str, model_kwargs_json: str) -> int:
    kwargs = {**dataset_info(dataset).model_kwargs(), **json.loads(model_kwargs_json)}
    return count_parameters(create_model(model, **kwargs))


def _format_fit(fit: tuple[float, float] | None) -> str:
    return "" if fit is None else f"{fit[0]:.2f} / {fit[1]:.2f}"


def _label(cell: Cell) -> str:
    """The model column: the model, and the tag that tells a variant of it apart."""
    return f"{cell.model} ({cell.tag})" if cell.tag else cell.model


def _device_rows(model: str, runs: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """A cell's runs as ``(model column, runs)`` per device, CPU first (results without a device
    are CPU runs); GPU rows name their device and never mix with CPU seeds."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run.get("device", "cpu"), []).append(run)
    ordered = sorted(groups.items(), key=lambda item: (item[0] != "cpu", item[0]))
    return [(model if device == "cpu" else f"{model} ({device})", group) for device, group in ordered]


def _mnist_section(by_cell: _ByCell) -> list[str]:
    """Plain MNIST: the models of the robustness figure, trained without distortions (no paper number)."""
    return [
        "## plain MNIST (for the robustness figure; not in the paper's table)",
        "",
        "The CNN and the ST-CNN trained on undistorted 28x28 MNIST with the default recipe, whose test",
        "error as the test digits are rotated, scaled and shifted (`stnkit robustness`) is compared with",
        "that of the same models trained on RTS. The paper reports no number for them.",
        "",
        *_error_table("mnist", GRIDS["mnist"], by_cell),
        "",
    ]


def _robustness_section(figure: RobustnessFigure) -> list[str]:
    """The sweep's models, its plot and its tables, under the argument it tests."""
    digits = figure.summary.get("digits", {})
    lines = [
        "## Robustness to pose: the paper's argument, measured",
        "",
        "Pooling gives a CNN only small, local invariance; the paper argues that a spatial transformer",
        "gives it invariance to large distortions. `stnkit robustness` measures that: the first",
        f"{digits.get('count', '?')} canonical MNIST test digits, rotated, scaled and shifted over a fixed grid",
        "by the same exact sampling as the distortions, classified by each model (files under",
        f"`{figure.folder}`). The models:",
        "",
    ]
    for run in figure.summary.get("runs", []):
        if run.get("checkpoint"):
            source = f"`{run['checkpoint']}` (seed {run.get('seed')}, epoch {run.get('epoch')})"
        else:
            source = f"shipped weights `{run.get('pretrained')}`"
        if run.get("kept_from"):
            source += ", measured in an earlier sweep of the same digits (`--keep-from`)"
        lines.append(f"- {run.get('label', run.get('model'))}: {source}")
    lines.append("")
    if figure.image is not None:
        lines += [f"![error against rotation, scale and shift]({figure.image})", ""]
    return [*lines, figure.table.rstrip("\n"), ""]


def _minutes(runs: list[dict[str, Any]]) -> str:
    return f"{statistics.fmean(r['wall_time_s'] for r in runs) / 60:.1f}"


def _cpu_minutes(runs: list[dict[str, Any]]) -> str:
    """The mean CPU minutes per run; where only some runs counted them, their mean and their seeds."""
    counted = [r for r in runs if r.get("cpu_time_s") is not None]
    if not counted:
        return ""
    minutes = f"{statistics.fmean(r['cpu_time_s'] for r in counted) / 60:.1f}"
    if len(counted) == len(runs):
        return minutes
    seeds = ", ".join(str(r["seed"]) for r in counted)
    return f"{minutes} (seed{'s' if len(counted) > 1 else ''} {seeds} only)"


def _variant(cell: Cell) -> str:
    """The GTSRB cell's contrast normalisation and, where not the default, its conv widths."""
    kwargs = cell.model_kwargs
    if kwargs.get("local_contrast"):
        variant = "local contrast"
    else:
        variant = "standardize" if kwargs.get("standardize") else "none"
    if "channels" in kwargs:
        variant += ", filters " + "/".join(str(c) for c in kwargs["channels"])
    return variant


def _machines(runs: list[dict[str, Any]]) -> str:
    return "; ".join(sorted({_machine(r) for r in runs}))


def _machine(run: dict[str, Any]) -> str:
    """The GPU a GPU run trained on, else the CPU and its cores."""
    machine = run["machine"]
    if run.get("device", "cpu") != "cpu" and machine.get("gpu"):
        return f"{machine['gpu']} (GPU)"
    return f"{_short_cpu_name(machine['cpu'])} ({machine['cores']} cores)"


def _short_cpu_name(name: str) -> str:
    """The CPU's name without trademark signs and a closing "Processor": "Intel(R) Xeon(R) Processor"
    is "Intel Xeon"."""
    words = name.replace("(R)", "").replace("(TM)", "").split()
    if len(words) > 1 and words[-1].lower() == "processor":
        words = words[:-1]
    return " ".join(words) or name


def _gtsrb_section(by_cell: _ByCell) -> list[str]:
    """GTSRB: selection runs show their validation error only; final runs their test error."""
    lines = [
        "## gtsrb (traffic signs; not in the paper)",
        "",
        "32x32 whole images (no region-of-interest crop), the official 12,630-image test set. The",
        "recipe is fixed in `stnkit.reproduce` before any GTSRB run; `select` rows train on the",
        "training set less the validation images of their recipe, held out as whole tracks (`val4k`:",
        "4,020 images in 134 tracks; `val10k`: 10,019 images in 334 tracks), and show only their",
        "validation error (their test error is recorded but used for nothing); the rest train on all 39,209",
        "images and show the final epoch's test error. Anchors at 32x32: Sermanet & LeCun 2011,",
        "99.17% accuracy; a Keras STN, 99.59% (hyper-parameters chosen on the test set); at 48x48:",
        "Moodstocks 99.61-99.67%, Arcos-Garcia et al. 2018 99.71%.",
        "",
        "Selection rows also show the validation split's cross-entropy, a finer signal than its",
        "error (a few mistakes in ~4,000 images; the `val10k` rows, added after all the others had",
        "run, hold out 2.5 times as many). `variant` is the contrast normalisation in front of",
        "the network: `standardize` (one mean and deviation per image) or `local contrast`",
        "(`stnkit.models.LocalContrastNorm`), and the conv stages' filters where they are not the",
        "default 32/64/128. The `local contrast` row was added on 2026-12-03, after",
        "the rows above had been run and their test errors seen. Its lever is the GTSRB records'",
        "preprocessing, but the test-set analysis in docs/results.md (over-exposed signs lost) points",
        "at it too, so that choice is not free of the test set; it is judged on validation only.",
        "The `val10k` rows after the standing recipe's (three transformers, perspective jitter, weight",
        "decay, wider filters) were each declared in docs/results.md before they ran, and are judged there by one",
        "rule: a row replaces the standing recipe only if its validation loss is lower and its",
        "validation error no higher. The wider filters (48/96/192) won under it; the `final` row with",
        "that variant is the wide network trained on all the images.",
        "",
        "| model | variant | parameters | phase | recipe | validation error | validation loss | test error "
        "| test accuracy | seeds | minutes per run | CPU minutes per run | machine |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for cell in GRIDS["gtsrb"]:
        phase = "select" if is_selection(cell) else "final"
        rows = _device_rows(cell.model, by_cell.get(("gtsrb", cell.name), []))
        described = f"{_variant(cell)} | {cell_parameters(cell):,} | {phase} | {cell.recipe.name}"
        if not rows:
            lines.append(f"| {cell.model} | {described} | not run yet | | | | | | | |")
        for model, runs in rows:
            head = f"| {model} | {described} |"
            tail = f"{', '.join(str(r['seed']) for r in runs)} | {_minutes(runs)} | {_cpu_minutes(runs)} | {_machines(runs)} |"
            if phase == "select":
                val = format_mean_sd([r["final_val_error"] for r in runs])
                losses = [r.get("final_val_loss") for r in runs]
                loss = "" if None in losses else f"{statistics.fmean(x for x in losses if x is not None):.4f}"
                lines.append(f"{head} {val} | {loss} | not used | | {tail}")
            else:
                test = _test_errors(runs)
                accuracy = 100 - _mean_test_percent(runs)
                lines.append(f"{head} | | {test} | {accuracy:.2f}% | {tail}")
    lines.append("")
    return lines
