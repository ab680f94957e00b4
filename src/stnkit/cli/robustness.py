"""``stnkit robustness``: test error of checkpoints or shipped weights against rotation, scale and shift."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stnkit import data
from stnkit.cli.common import (
    CliError,
    add_data_root_argument,
    add_numerics_argument,
    apply_numerics,
    dataset_model_kwargs,
    output_folder,
    positive_int,
)
from stnkit.machine import provenance
from stnkit.models import create_model, get_pretrained
from stnkit.robustness import (
    DEFAULT_SWEEPS,
    PLOT_NAME,
    RESULT_NAME,
    SWEEP_UNITS,
    TABLE_NAME,
    SweepFileError,
    mnist_canvas,
    pose_errors,
    read_sweep,
    sweep_poses,
    write_sweep,
)
from stnkit.runs import load_run

__all__ = ["add_parser", "cmd_robustness"]


@dataclass
class _Run:
    """A loaded model, a checkpoint's or shipped weights', and what the outputs say about it.

    Exactly one of ``checkpoint`` and ``pretrained`` is set; ``seed`` and ``epoch`` are a checkpoint's,
    ``recorded_test_error`` the registry entry's of shipped weights.
    """

    model: nn.Module
    model_name: str
    dataset: str
    canvas: int
    data_root: str | None
    checkpoint: str | None = None
    pretrained: str | None = None
    seed: int | None = None
    epoch: int | None = None
    recorded_test_error: float | None = None
    label: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)  # stnkit.machine.provenance, taken at load


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit robustness``."""
    p = sub.add_parser(
        "robustness",
        help="test error of checkpoints or shipped weights as the MNIST test digits are rotated, scaled, shifted",
        description=(
            "Rotate (0-180 degrees), scale and shift the MNIST test digits over a fixed grid and measure "
            "each model's error at every value (checkpoints, then --pretrained shipped weights); write "
            f"{RESULT_NAME}, {TABLE_NAME} and {PLOT_NAME} into --out. Digits are drawn into the canvas each "
            "model takes (28 or 42 px)."
        ),
    )
    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoint.pt files of MNIST classifiers")
    p.add_argument(
        "--pretrained",
        metavar="NAME",
        action="append",
        default=[],
        help=(
            "also sweep these shipped weights, e.g. st-cnn-affine.rts (repeatable; after the checkpoints; "
            "see `stnkit models`)"
        ),
    )
    p.add_argument(
        "--keep-from",
        metavar="JSON",
        help=(
            f"carry the models of an earlier sweep's {RESULT_NAME} over, with the errors it measured "
            "(it must have swept the same digits over the same values; read before --out is written, "
            "so it may be the file this run replaces)"
        ),
    )
    p.add_argument("--out", required=True, help="folder for the JSON, the table and the plot")
    p.add_argument("--limit", type=positive_int, help="the first N test digits (default: all 10,000)")
    for axis, flag in (("angle", "--angles"), ("scale", "--scales"), ("shift", "--shifts")):
        default = " ".join(f"{v:g}" for v in DEFAULT_SWEEPS[axis])
        p.add_argument(
            flag,
            dest=axis,
            type=float,
            nargs="+",
            default=list(DEFAULT_SWEEPS[axis]),
            help=f"{axis} values, {SWEEP_UNITS[axis]} (default {default})",
        )
    p.add_argument("--batch-size", type=positive_int, default=500, help="(default 500)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    add_data_root_argument(p, of_a_run=True)
    add_numerics_argument(p)
    p.set_defaults(func=cmd_robustness)


def _canvas(dataset: str, model_kwargs: dict[str, Any], where: str) -> int:
    """The canvas side of a model built with ``model_kwargs`` for ``dataset``, or a one-line error."""
    try:
        size = dataset_model_kwargs(dataset, model_kwargs)
        return mnist_canvas(
            in_channels=int(size["in_channels"]),
            num_classes=int(size["num_classes"]),
            image_size=list(size["image_size"]),
        )
    except (TypeError, ValueError) as err:
        raise CliError(f"{where}: {err}") from err


def _load(checkpoint: str, argv: Sequence[str]) -> _Run:
    model, state, config = load_run(checkpoint)
    source = provenance(argv, checkpoints=[checkpoint])  # hashed as soon as read, not after the sweep
    return _Run(
        model,
        model_name=state["model_name"],
        dataset=config.dataset,
        canvas=_canvas(config.dataset, state["model_kwargs"], checkpoint),
        data_root=config.data_root,
        checkpoint=checkpoint,
        seed=config.seed,
        epoch=state["epoch"],
        provenance=source,
    )


def _load_pretrained(name: str, argv: Sequence[str]) -> _Run:
    entry = get_pretrained(name)  # an unknown name is its one-line error, listing the shipped ones
    canvas = _canvas(entry.dataset, dict(entry.model_kwargs), f"pretrained weights {entry.name!r}")
    return _Run(
        create_model(entry.name, pretrained=True),  # SHA-256 and metadata checked before loading
        model_name=entry.model,
        dataset=entry.dataset,
        canvas=canvas,
        data_root=None,
        pretrained=entry.name,
        recorded_test_error=entry.test_error,
        provenance=provenance(argv, pretrained=(entry.name, entry.sha256)),
    )


def _base_label(run: _Run) -> str:
    """A checkpoint is "MODEL on DATASET"; shipped weights say they are, with their recorded test error."""
    if run.pretrained is None:
        return f"{run.model_name} on {run.dataset}"
    error = "not recorded" if run.recorded_test_error is None else f"{100 * run.recorded_test_error:.2f}%"
    return f"shipped {run.pretrained} (on {run.dataset}, test error {error})"


def _label(runs: Sequence[_Run]) -> None:
    """Legend labels (:func:`_base_label`), with the seed, then the position, where that is ambiguous."""
    for run in runs:
        run.label = _base_label(run)
    for extra in (lambda r, _: "" if r.seed is None else f" (seed {r.seed})", lambda _, k: f" #{k + 1}"):
        seen: dict[str, int] = {}
        for run in runs:
            seen[run.label] = seen.get(run.label, 0) + 1
        for k, run in enumerate(runs):
            if seen[run.label] > 1:
                run.label += extra(run, k)


def _kept_runs(path: str, sweeps: dict[str, list[float]]) -> tuple[int, list[dict[str, Any]]]:
    """An earlier sweep's digit count and runs, each marked with where it came from; one-line errors.

    Only a sweep of the same digits over the same values can stand beside this one: its errors
    are then the same measurement (the posed digits are exact, the same on every machine). A run
    the earlier sweep had itself kept keeps its first origin.
    """
    try:
        earlier = read_sweep(path)
    except SweepFileError as err:
        raise CliError(f"--keep-from {err}") from err
    swept = {axis: sweep["values"] for axis, sweep in earlier["sweeps"].items()}
    if swept != sweeps:
        raise CliError(
            f"--keep-from {path}: it swept {swept}, this run sweeps {sweeps}; give the same values"
        )
    kept = [{**run, "kept_from": run.get("kept_from", str(path))} for run in earlier["runs"]]
    return earlier["digits"]["count"], kept


def cmd_robustness(args: argparse.Namespace) -> int:
    """``stnkit robustness``."""
    apply_numerics(args.numerics)  # first: torch fixes its kernels at its first computation
    if not args.checkpoints and not args.pretrained:
        raise CliError("give at least one checkpoint (CKPT) or --pretrained NAME, got neither")
    sweeps = {axis: [float(v) for v in getattr(args, axis)] for axis in DEFAULT_SWEEPS}
    poses = {axis: sweep_poses(axis, values) for axis, values in sweeps.items()}  # bad values fail here
    # Read before anything is written: --keep-from may name the file this run replaces. Its digit
    # count is checked once the digits are read (a --limit past the test set takes them all).
    kept_count, kept = (0, []) if args.keep_from is None else _kept_runs(args.keep_from, sweeps)
    runs = [_load(path, args.argv) for path in args.checkpoints]
    runs += [_load_pretrained(name, args.argv) for name in args.pretrained]
    _label(runs)
    clash = sorted({run.label for run in runs} & {record["label"] for record in kept})
    if clash:
        raise CliError(f"--keep-from {args.keep_from}: it already has {clash}; leave those models out")
    out = output_folder(args.out, "--out")  # before the data is read: a bad --out fails at once
    # Shipped weights record no data folder: the first checkpoint's, else the default.
    recorded = next((run.data_root for run in runs if run.data_root), None)
    root = data.run_data_root(args.data_root, recorded)
    digits, labels = data.load_source("mnist", "test", root)
    if args.limit:
        digits, labels = digits[: args.limit], labels[: args.limit]
    if args.keep_from is not None and kept_count != digits.shape[0]:
        raise CliError(
            f"--keep-from {args.keep_from}: it posed the first {kept_count} MNIST test digits, "
            f"this run the first {digits.shape[0]}; give the same --limit"
        )
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        errors = _sweep(runs, digits, labels, poses, batch_size=args.batch_size)
    finally:
        torch.set_num_threads(threads)
    _write_outputs(out, runs, sweeps, errors, count=int(digits.shape[0]), kept=kept)
    return 0


def _sweep(
    runs: Sequence[_Run],
    digits: torch.Tensor,
    labels: torch.Tensor,
    poses: dict[str, list[Any]],
    *,
    batch_size: int,
) -> dict[str, dict[str, list[float]]]:
    """label -> sweep -> errors; runs of one canvas share the posed images."""
    errors: dict[str, dict[str, list[float]]] = {run.label: {} for run in runs}
    for canvas in sorted({run.canvas for run in runs}):
        group = [run for run in runs if run.canvas == canvas]
        for axis, axis_poses in poses.items():
            table = pose_errors(
                [run.model for run in group], digits, labels, axis_poses, canvas=canvas, batch_size=batch_size
            )  # (len(group), len(axis_poses))
            for run, row in zip(group, table.tolist(), strict=True):
                errors[run.label][axis] = row
    return errors


def _record(run: _Run, errors: dict[str, list[float]]) -> dict[str, Any]:
    """A run's entry in the JSON: where the weights come from, what they are, the errors per sweep,
    and the sweep's provenance (kept with the entry when a later sweep keeps it)."""
    if run.pretrained is None:
        source: dict[str, Any] = {"checkpoint": run.checkpoint}
        details: dict[str, Any] = {"seed": run.seed, "epoch": run.epoch}
    else:
        source = {"pretrained": run.pretrained}
        details = {"recorded_test_error": run.recorded_test_error}
    return {
        "label": run.label,
        **source,
        "model": run.model_name,
        "dataset": run.dataset,
        **details,
        "canvas": run.canvas,
        "errors": errors,
        "provenance": run.provenance,
    }


def _write_outputs(
    out: Path,
    runs: Sequence[_Run],
    sweeps: dict[str, list[float]],
    errors: dict[str, dict[str, list[float]]],
    *,
    count: int,
    kept: Sequence[dict[str, Any]] = (),
) -> None:
    # The earlier sweep's models first, then this run's, in the JSON, the table and the plot.
    records = [*kept, *(_record(run, errors[run.label]) for run in runs)]
    write_sweep(out, sweeps, records, count=count)
    print(f"wrote {out / RESULT_NAME}, {out / TABLE_NAME} and {out / PLOT_NAME}")
