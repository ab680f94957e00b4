"""``stnkit eval``: a checkpoint's (or shipped weights') loss, accuracy and error on a dataset split, as JSON.

With ``--per-class`` and ``--confusion`` it also writes the errors per class (JSON) and the confusion
picture, from the same single pass over the data. ``--split val`` evaluates the validation images a
run held out (``--val-size``); ``--tta SPEC`` averages the softmax over fixed poses of each image
(:func:`stnkit.data.tta_views`); several checkpoints are evaluated as an ensemble (the softmax
averaged over the models).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from stnkit import data
from stnkit.cli.common import (
    CliError,
    add_data_root_argument,
    add_numerics_argument,
    apply_numerics,
    check_dataset_fits,
    output_file,
    positive_int,
    write_json,
)
from stnkit.engine import (
    confusion_matrix,
    evaluate,
    per_class_errors,
    predict,
    predict_ensemble,
    predict_views,
)
from stnkit.machine import provenance
from stnkit.models import create_model, get_pretrained
from stnkit.runs import load_run

__all__ = ["add_parser", "cmd_eval"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (or an ensemble) on a dataset's test, validation or training split",
        description="Evaluate a checkpoint (or the ensemble of several) and print loss, accuracy and error as JSON.",
    )
    p.add_argument(
        "checkpoints",
        nargs="*",
        metavar="checkpoint",
        help="a checkpoint.pt written by `stnkit train`; several (before the options): their ensemble, "
        "the softmax averaged",
    )
    p.add_argument(
        "--pretrained",
        metavar="NAME",
        help="evaluate shipped weights instead of a checkpoint (see stnkit.models.list_pretrained())",
    )
    p.add_argument("--dataset", help="dataset (default: the one it was trained on)")
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "train", "val"),
        help="(default test); val: the validation images the run held out (trained with --val-size); "
        "train: the whole training source, held-out images included",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="(default 256)")
    p.add_argument("--limit", type=positive_int, help="evaluate on this many images")
    p.add_argument(
        "--per-class",
        metavar="OUT.json",
        help="also write images, errors and error per class (with class names) to this JSON file",
    )
    p.add_argument(
        "--confusion",
        metavar="OUT.png",
        help="also draw the confusion matrix's errors (diagonal blank, log colour scale) to this PNG",
    )
    p.add_argument(
        "--tta",
        metavar="SPEC",
        type=_tta_argument,
        help="test-time augmentation: average the softmax over the image and each range's two extremes, "
        "e.g. rotate=5,scale=0.05,shift=1 (9 views)",
    )
    p.add_argument(
        "--out",
        metavar="OUT.json",
        help="also write the printed JSON to this file, with where it came from: the command, each "
        "checkpoint's SHA-256, the machine, torch, the git commit and the time",
    )
    add_data_root_argument(p, of_a_run=True)
    add_numerics_argument(p)
    p.set_defaults(func=cmd_eval)


def _tta_argument(text: str) -> list[data.TtaView]:
    """argparse type: a test-time augmentation spec -> its views."""
    try:
        return data.tta_views(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


@dataclass(frozen=True)
class _Evaluated:
    """What is evaluated: one model or an ensemble, and where its data comes from."""

    models: list[nn.Module]
    trained_on: str  # the dataset of the run(s)
    built_with: list[Mapping[str, Any]]  # each model's builder arguments
    root: str | None
    val_size: int  # the images held out for --split val (0: none)
    train_seed: int  # the seed of --split train's distortions
    source: dict[str, Any]  # extra fields of the printed JSON
    label: str  # for the confusion picture's title


def _check_picture_format(path: str, flag: str) -> None:
    """Refuse, before the evaluation, a picture name whose extension matplotlib cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise CliError(f"{flag} {path}: .{suffix} is not a picture format ({', '.join(sorted(formats))})")


def cmd_eval(args: argparse.Namespace) -> int:
    """``stnkit eval``."""
    apply_numerics(args.numerics)  # first: torch fixes its kernels at its first computation
    if bool(args.checkpoints) == (args.pretrained is not None):
        raise CliError("give a checkpoint or --pretrained NAME (one of them)")
    if args.pretrained is not None:
        target = _pretrained(args.pretrained, args.split, args.data_root)
        shipped = get_pretrained(args.pretrained)
        source = provenance(args.argv, pretrained=(shipped.name, shipped.sha256)) if args.out else None
    else:
        target = _checkpoints(args.checkpoints, args.split, args.data_root)
        # Hashed as soon as they are read, not after the work: a training that rewrites a checkpoint
        # meanwhile must not lend the record its next epoch's digest.
        source = provenance(args.argv, checkpoints=args.checkpoints) if args.out else None
    dataset = args.dataset or target.trained_on
    for built_with in target.built_with:
        check_dataset_fits(dataset, built_with)
    for path, flag in ((args.per_class, "--per-class"), (args.confusion, "--confusion"), (args.out, "--out")):
        if path is not None:  # a path that cannot be written fails here, before the data is read
            output_file(path, flag, inputs=args.checkpoints)
    if args.confusion is not None:
        _check_picture_format(args.confusion, "--confusion")
    loader = data.make_loader(
        dataset,
        split=args.split,
        batch_size=args.batch_size,
        root=target.root,
        # train: the (first) run's draws of a distorted dataset; test and val: as training evaluated them
        seed=target.train_seed if args.split == "train" else data.TEST_SEED,
        limit=args.limit,
        shuffle=False,
        drop_last=False,
        val_size=target.val_size if args.split == "val" else 0,
    )
    header = {"dataset": dataset, "split": args.split, **target.source}
    if args.tta is not None:
        header["tta"] = [view.name for view in args.tta]
    plain = args.per_class is None and args.confusion is None and args.tta is None
    if plain and len(target.models) == 1:
        metrics = evaluate(target.models[0], loader)
    else:
        title = f"{target.label} on {dataset} ({args.split}{', test-time augmentation' if args.tta else ''})"
        metrics = _analyse(
            target.models,
            loader,
            header,
            title=title,
            views=args.tta,
            per_class=args.per_class,
            confusion=args.confusion,
        )
    print(json.dumps({**header, **metrics}, indent=2))
    if args.out is not None:
        write_json(args.out, {**header, **metrics, "provenance": source})
    return 0


def _pretrained(name: str, split: str, root: str | None) -> _Evaluated:
    entry = get_pretrained(name)
    if split == "val":
        raise CliError(
            "--split val needs a checkpoint of a run trained with --val-size; shipped weights held none out"
        )
    return _Evaluated(
        models=[create_model(entry.name, pretrained=True)],
        trained_on=entry.dataset,
        built_with=[entry.model_kwargs],
        root=root,
        val_size=0,
        train_seed=data.TEST_SEED,
        source={"pretrained": entry.name, "recorded_test_error": entry.test_error},
        label=entry.name,
    )


def _checkpoints(paths: list[str], split: str, root: str | None) -> _Evaluated:
    """Load the runs; several must share a dataset (and, for --split val, the held-out images)."""
    runs = [load_run(path) for path in paths]
    first_path, first_config = paths[0], runs[0][2]
    for path, (_, _, config) in zip(paths[1:], runs[1:]):
        if config.dataset != first_config.dataset:
            raise CliError(
                f"an ensemble needs one dataset: {first_path} was trained on {first_config.dataset!r}, "
                f"{path} on {config.dataset!r}"
            )
        if split == "val" and config.val_size != first_config.val_size:
            raise CliError(
                f"--split val needs the same held-out images: {first_path} held out "
                f"{first_config.val_size} images, {path} {config.val_size}"
            )
    if split == "val" and not first_config.val_size:
        raise CliError(f"--split val needs a run trained with --val-size; {first_path} held out no images")
    names = ", ".join(f"{state['model_name']} ({path})" for path, (_, state, _) in zip(paths, runs))
    return _Evaluated(
        models=[model for model, _, _ in runs],
        trained_on=first_config.dataset,
        built_with=[state["model_kwargs"] for _, state, _ in runs],
        root=data.run_data_root(root, first_config.data_root),
        val_size=first_config.val_size,
        train_seed=first_config.seed,
        source={"checkpoints": list(paths)} if len(paths) > 1 else {},
        label=names if len(paths) == 1 else f"ensemble of {len(paths)}: {names}",
    )


def _analyse(
    models: Sequence[nn.Module],
    loader: data.DistortedLoader,
    header: dict[str, Any],
    *,
    title: str,
    views: Sequence[Callable[[Tensor], Tensor]] | None,
    per_class: str | None,
    confusion: str | None,
) -> dict[str, Any]:
    """The predictions (averaged over the models and ``views``), their metrics, and the per-class JSON
    and the confusion picture asked for."""
    if len(models) > 1:
        predictions = predict_ensemble(models, loader, views)
    elif views is not None:
        predictions = predict_views(models[0], loader, views)
    else:
        predictions = predict(models[0], loader)
    metrics = predictions.metrics()
    dataset = header["dataset"]
    names = data.class_names(dataset)
    num_classes = data.dataset_info(dataset).num_classes
    if per_class is not None:
        rows = per_class_errors(predictions.labels, predictions.predictions, num_classes)
        record = {
            **header,
            "count": metrics["count"],
            "errors": sum(row.errors for row in rows),
            "error": metrics["error"],
            "classes": [row.to_dict(names) for row in rows],
        }
        write_json(per_class, record)
    if confusion is not None:
        from stnkit.viz import plot_confusion  # matplotlib only when a picture is asked for

        matrix = confusion_matrix(predictions.labels, predictions.predictions, num_classes)
        plot_confusion(matrix, confusion, class_names=names, title=title)
    return metrics
