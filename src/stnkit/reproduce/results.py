"""Result files: the JSON summary one finished cell and seed leaves, and reading them back.

A result file is ``<folder>/<grid>/<cell>-s<seed>.json`` (:meth:`Cell.run_name`); its fields are those
of :func:`cell_result`, under ``"version": RESULT_VERSION``. Errors are fractions (0.005 is 0.5%),
except ``paper_error_percent``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from torch import nn

from stnkit.data import dataset_info
from stnkit.geometry.checks import short_repr
from stnkit.machine import git_commit, machine_facts
from stnkit.models import count_parameters, create_model
from stnkit.reproduce.grids import GRIDS, Cell, device_kind

__all__ = [
    "RESULT_VERSION",
    "ResultFileError",
    "cell_model",
    "cell_parameters",
    "cell_result",
    "final_train_error",
    "format_mean_sd",
    "is_cpu_run",
    "load_results",
    "machine_facts",
    "results_by_cell",
]

RESULT_VERSION = 1
# What the report reads from every result (the rest, e.g. the validation loss, may be absent).
_REPORTED_FIELDS = ("grid", "cell", "seed", "final_test_error", "final_val_error", "wall_time_s", "machine")


class ResultFileError(ValueError):
    """A file under a grid's result folder is not a readable result file of this version."""


def _numerics(records: Sequence[dict[str, Any]]) -> str | None:
    """The run's numerics (stnkit.numerics): "mixed" if its epochs differ (or only some recorded
    them), None if none did (runs from before they were recorded)."""
    used = {r.get("numerics") for r in records}
    return used.pop() if len(used) == 1 else "mixed"


def cell_result(
    cell: Cell,
    seed: int,
    records: Sequence[dict[str, Any]],
    command: Sequence[str],
    *,
    device: str = "cpu",
    parameters: int | None = None,
) -> dict[str, Any]:
    """The JSON-ready summary of a finished cell from its per-epoch metrics.

    Args:
        cell: the cell that ran.
        seed: its seed.
        records: the run's ``metrics.jsonl`` records, one per epoch, the last one final.
        command: the arguments of ``stnkit`` that trained it (``["train", "--dataset", ...]``).
        device: the device it trained on (``--device``); recorded as its kind, cpu or cuda.
        parameters: the trainable parameters of the model it trained (from its checkpoint), so that
            a later change of the cell's architecture is caught when the file is read.

    Returns:
        The final epoch's test and validation errors, the per-epoch curves, time and speed, the
        machine (:func:`machine_facts`), the git commit of the working directory, the command.
    """
    last = records[-1]
    evaluated = [r for r in records if "test_error" in r]
    return {
        "version": RESULT_VERSION,
        "grid": cell.grid,
        "cell": cell.name,
        "dataset": cell.dataset,
        "model": cell.model,
        "seed": seed,
        "device": device_kind(device),  # the report keeps CPU and GPU rows apart
        "recipe": cell.recipe.name,
        "paper_error_percent": cell.paper_error,
        "parameters": parameters,
        "final_test_error": last["test_error"],
        "final_val_error": last.get("val_error"),
        # The validation split's cross-entropy: a finer signal than its error where that counts a
        # handful of mistakes (GTSRB's tracks).
        "final_val_loss": last.get("val_loss"),
        "epochs": last["epoch"],
        "curves": {
            "epoch": [r["epoch"] for r in evaluated],
            "val_error": [r.get("val_error") for r in evaluated],
            "test_error": [r["test_error"] for r in evaluated],
            "train_error": [r["train_error"] for r in evaluated],
        },
        "wall_time_s": last["elapsed_s"],
        # CPU seconds of the training process, all threads (None for runs from before it was counted).
        "cpu_time_s": last.get("cpu_s"),
        "images_per_s": statistics.fmean(r["images_per_s"] for r in records),
        "numerics": _numerics(records),
        "machine": machine_facts(),
        "git_commit": git_commit(),
        "command": shlex.join(["stnkit", *command]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def load_results(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every result file under the grids' folders of ``folder``, grid by grid, files in name order.

    Only ``folder/<grid>/*.json`` for the grids of :data:`GRIDS` are read: a results folder may hold
    other experiments' files too (``results/keras``, ...). A missing folder holds no results.

    Raises:
        ResultFileError: a file cannot be read or parsed, is not a result of this version, lacks a
            field the report reads or holds one of the wrong type, names no cell of its grid, does
            not lie where its cell, seed and device put it, was trained by another recipe or command
            than its cell's today (the message names the file and what is wrong). A file's place
            is fixed by its cell, seed and device, so no two files can hold the same run.
    """
    folder = Path(folder)
    results = []
    paths = [path for grid in GRIDS for path in sorted((folder / grid).glob("*.json"))]
    for path in paths:
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ResultFileError(f"{path}: not a readable result file ({err})") from err
        if not (isinstance(result, dict) and result.get("version") == RESULT_VERSION and "cell" in result):
            raise ResultFileError(
                f"{path}: not a result file of this version ({RESULT_VERSION}) of stnkit reproduce"
            )
        missing = [name for name in _REPORTED_FIELDS if name not in result]
        if missing:
            raise ResultFileError(f"{path}: a result file without {', '.join(missing)}")
        problem = _field_problem(result) or _cell_problem(result, path.relative_to(folder))
        if problem:
            raise ResultFileError(f"{path}: {problem}")
        results.append(result)
    return results


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_curve(values: Any) -> bool:
    """A list of finite numbers, where an epoch that measured nothing (no validation split) is null."""
    return isinstance(values, list) and all(v is None or _is_number(v) for v in values)


def _is_machine(value: Any) -> bool:
    """Whether ``value`` is a result's machine: a CPU name and a core count (the report shows both)."""
    if not isinstance(value, dict):
        return False
    cores = value.get("cores")
    return isinstance(value.get("cpu"), str) and isinstance(cores, int) and not isinstance(cores, bool)


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


# Each field the report reads, what it must be, the check, and whether it may be absent (files
# written before it existed); null passes only where the check allows it.
_FIELD_CHECKS: tuple[tuple[str, str, Callable[[Any], bool], bool], ...] = (
    ("grid", "a grid name", lambda v: v in GRIDS, False),
    ("cell", "a cell name", lambda v: isinstance(v, str) and v != "", False),
    ("seed", "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool), False),
    ("final_test_error", "a fraction in [0, 1]", _is_fraction, False),
    ("final_val_error", "a fraction in [0, 1] or null", _or_none(_is_fraction), False),
    ("final_val_loss", "a finite number or null", _or_none(_is_number), True),
    ("wall_time_s", "seconds >= 0", lambda v: _is_number(v) and v >= 0, False),
    ("cpu_time_s", "seconds >= 0 or null", _or_none(lambda v: _is_number(v) and v >= 0), True),
    ("device", "cpu or cuda", lambda v: v in ("cpu", "cuda"), True),
    ("parameters", "a count >= 0 or null", _or_none(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), True),
    ("machine", 'an object with a "cpu" name and a "cores" count', _is_machine, False),
    ("curves", 'an object of lists of finite numbers or nulls ("train_error", ...)', lambda v: isinstance(v, dict) and all(_is_curve(c) for c in v.values()), True),
)  # fmt: skip


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
    return count_parameters(_build_model(model, dataset, json.loads(model_kwargs_json)))


def cell_model(cell: Cell) -> nn.Module:
    """The cell's model with fresh weights, built for its dataset as ``stnkit train`` builds it."""
    return _build_model(cell.model, cell.dataset, cell.model_kwargs)


def _build_model(model: str, dataset: str, model_kwargs: dict[str, Any]) -> nn.Module:
    return create_model(model, **{**dataset_info(dataset).model_kwargs(), **model_kwargs})


def _field_problem(result: dict[str, Any]) -> str | None:
    """What is wrong with the first ill-typed field the report reads, or None."""
    for name, expected, check, may_be_absent in _FIELD_CHECKS:
        if may_be_absent and name not in result:
            continue
        value = result.get(name)
        if not check(value):
            return f"{name} must be {expected}, got {short_repr(value)}"
    return None


# ``stnkit train`` arguments that say where and how fast a run went, not what it trained: a result's
# command less these is its cell's :meth:`Cell.train_args`. Each with how many values follow it.
_PLACE_ARGUMENTS = {"--threads": 1, "--out": 1, "--no-progress": 0, "--data-root": 1, "--device": 1}


def _cell_problem(result: dict[str, Any], relative_path: Path) -> str | None:
    """Where a well-typed result disagrees with its cell as the grid defines it today, or None.

    A renamed or removed cell, a file moved to another cell's name, or a run of another recipe
    would otherwise enter a row silently, or drop out of the page without a word.
    """
    grid, name, seed, device = result["grid"], result["cell"], result["seed"], result.get("device", "cpu")
    cell = next((c for c in GRIDS[grid] if c.name == name), None)
    if cell is None:
        return f"cell {name!r} is no cell of grid {grid} today (renamed or removed? move the file away)"
    expected_path = Path(grid) / f"{cell.run_name(seed, device)}.json"
    if relative_path != expected_path:
        return f"holds {name} seed {seed} ({device}), whose file is {expected_path}"
    recipe = result.get("recipe", cell.recipe.name)
    if recipe != cell.recipe.name:
        return f"trained by recipe {recipe!r}, but cell {name} trains by {cell.recipe.name!r}"
    if "command" in result:
        trained = _train_args_of(result["command"])
        if trained is None:
            return f"command must be a `stnkit train` command, got {short_repr(result['command'])}"
        expected_args = cell.train_args(seed)
        if trained != expected_args:
            return (
                f"its command trains {shlex.join(trained)}, "
                f"but cell {name} seed {seed} is: stnkit train {shlex.join(expected_args)}"
            )
    # Files from before the count was recorded have none; the command check above covers them.
    parameters, today = result.get("parameters"), cell_parameters(cell)
    if parameters is not None and parameters != today:
        return (
            f"it trained a model of {parameters:,} parameters, but cell {name}'s model has "
            f"{today:,} today (its architecture changed: rerun the cell)"
        )
    return None


def _train_args_of(command: Any) -> list[str] | None:
    """The ``stnkit train`` arguments of a recorded command less :data:`_PLACE_ARGUMENTS`, None if it is
    not a ``stnkit train`` command."""
    try:
        words = shlex.split(command) if isinstance(command, str) else []
    except ValueError:  # unbalanced quotes
        return None
    if words[:2] != ["stnkit", "train"]:
        return None
    args, rest = [], iter(words[2:])
    for word in rest:
        if word in _PLACE_ARGUMENTS:
            for _ in range(_PLACE_ARGUMENTS[word]):
                next(rest, None)
        else:
            args.append(word)
    return args


def final_train_error(result: dict[str, Any]) -> float | None:
    """A result's training error of its last epoch (a fraction); None where its curves lack one."""
    curve = result.get("curves", {}).get("train_error") or [None]
    return curve[-1]


def is_cpu_run(result: dict[str, Any]) -> bool:
    """Whether a result trained on the CPU (results from before the device was recorded did)."""
    return result.get("device", "cpu") == "cpu"


def results_by_cell(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The results of each cell, keyed by ``(grid, cell name)``, in ascending seed order.

    Example:
        >>> runs = [{"grid": "tc", "cell": "tc-cnn", "seed": 1}, {"grid": "tc", "cell": "tc-cnn", "seed": 0}]
        >>> tuple(r["seed"] for r in results_by_cell(runs)["tc", "tc-cnn"])
        (0, 1)
    """
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        by_cell.setdefault((result["grid"], result["cell"]), []).append(result)
    return {key: sorted(runs, key=lambda r: r["seed"]) for key, runs in by_cell.items()}


def format_mean_sd(errors: Sequence[float]) -> str:
    """Errors (fractions) as percent, ``mean ± sample standard deviation``; one error alone as itself.

    Example:
        >>> format_mean_sd([0.004, 0.006]), format_mean_sd([0.0125])
        ('0.50 ± 0.14', '1.25')
    """
    if not errors:
        raise ValueError("format_mean_sd needs at least one error, got none")
    percent = [100 * e for e in errors]
    if len(percent) == 1:
        return f"{percent[0]:.2f}"
    return f"{statistics.fmean(percent):.2f} ± {statistics.stdev(percent):.2f}"
