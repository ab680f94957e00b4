"""What the commands share: exit codes, the error types shown as one line, flag types, dataset checks."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stnkit import data
from stnkit.engine import CheckpointError
from stnkit.export import MissingDependencyError
from stnkit.files import atomic_write_text
from stnkit.models import UnknownModelError
from stnkit.numerics import NUMERICS, NumericsError, use_numerics

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "USER_ERRORS",
    "CliError",
    "add_data_root_argument",
    "add_numerics_argument",
    "apply_numerics",
    "check_dataset_fits",
    "check_not_an_input",
    "dataset_model_kwargs",
    "nonneg_float",
    "one_line",
    "output_file",
    "output_folder",
    "positive_float",
    "positive_int",
    "write_json",
]

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED = 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended


class CliError(Exception):
    """A problem with the user's input, reported as one line and exit status 1."""


# Failures a user can fix, reported as one line; anything else is a bug and keeps its traceback.
# OSError covers every failure to read or write a path (missing, not a folder, no permission,
# disk full), not only FileNotFoundError.
USER_ERRORS: tuple[type[BaseException], ...] = (
    CliError,
    CheckpointError,
    MissingDependencyError,
    OSError,
    ValueError,
    UnknownModelError,  # a KeyError; any other KeyError is a bug and keeps its traceback
)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line: ``PATH: reason`` for an OS error on a path."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        message: object = f"{err.filename}: {err.strerror}"
    else:
        message = err
    return " ".join(str(message).split())


# --- flag types ---------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """argparse type: a number >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_data_root_argument(parser: argparse.ArgumentParser, *, of_a_run: bool = False, **kwargs: Any) -> None:
    """``--data-root`` (the data folder), also spelled ``--data-dir``, into ``args.data_root``.

    ``of_a_run``: the command reads a finished run's data, whose recorded folder comes first while it
    exists (:func:`stnkit.data.run_data_root`).
    """
    default = "$STNKIT_DATA, ../shared/data beside the checkout, the user cache"
    if of_a_run:
        default = "the folder the run trained from while it exists, else " + default
    parser.add_argument(
        "--data-root",
        "--data-dir",
        dest="data_root",
        metavar="DIR",
        help=f"data folder (default: {default})",
        **kwargs,
    )


def add_numerics_argument(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    """``--numerics portable|native`` into ``args.numerics`` (stnkit.numerics)."""
    parser.add_argument(
        "--numerics",
        choices=NUMERICS,
        help=(
            "native (default): torch's fastest kernels for this CPU; portable: kernels capped at AVX2 "
            "and MKL's reproducible branch, fewer CPU-dependent code paths (stnkit.numerics)"
        ),
        **kwargs,
    )


def apply_numerics(numerics: str | None) -> None:
    """Put the process on ``numerics`` (None: native) before it computes anything."""
    try:
        use_numerics("portable" if numerics == "portable" else "native")
    except NumericsError as err:
        raise CliError(f"{err}; or leave out --numerics portable") from err


# --- data and files -----------------------------------------------------------------------------


def dataset_model_kwargs(dataset: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Builder arguments that make a model fit ``dataset``, plus ``extra``."""
    return {**data.dataset_info(dataset).model_kwargs(), **extra}


def check_dataset_fits(
    dataset: str, built_with: Mapping[str, Any], *, source: str = "the model was built for"
) -> None:
    """Refuse a dataset whose channels, classes or image size are not those the model was built for.

    ``source`` names where ``built_with`` comes from in the message (a checkpoint's model, or
    ``--model-kwargs``).
    """
    actual = dataset_model_kwargs(dataset, {})
    for key in ("in_channels", "num_classes", "image_size"):
        if key not in built_with:  # built with the builder's default: nothing recorded to compare
            continue
        given = np.atleast_1d(built_with[key])
        if key == "image_size" and given.size == 1:  # builders read one int as a square
            given = np.repeat(given, 2)
        if list(given) != list(np.atleast_1d(actual[key])):
            raise CliError(f"dataset {dataset!r} has {key}={actual[key]}, {source} {built_with[key]}")


def output_folder(path: str | Path, flag: str) -> Path:
    """Create the output folder ``path`` (given as ``flag``) before any work, or say in one line why not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CliError(f"{flag} {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"{flag} {path}: cannot create the folder ({err.strerror or err})") from err
    return path


def output_file(path: str | Path, flag: str, *, inputs: Sequence[str | Path] = ()) -> Path:
    """Check an output file's path (given as ``flag``) before any work: not a folder, not one of the
    ``inputs`` the command reads (:func:`check_not_an_input`), its folder made."""
    path = Path(path)
    if path.is_dir():
        raise CliError(f"{flag} {path} is a folder; give a file name")
    check_not_an_input(path, flag, inputs)
    output_folder(path.parent, f"{flag} {path}: its folder")
    return path


def check_not_an_input(path: str | Path, flag: str, inputs: Sequence[str | Path]) -> None:
    """Refuse an output file that is one of the files the command reads: writing it would destroy them."""
    for source in inputs:
        if _same_file(Path(path), Path(source)):
            raise CliError(f"{flag} {path} is {source}, which this command reads; give another file")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links and relative parts), existing or not."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def write_json(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as indented JSON (one trailing newline), atomically."""
    return atomic_write_text(path, json.dumps(record, indent=1) + "\n")
