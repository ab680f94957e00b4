"""``stnkit eval``: a checkpoint's (or shipped weights') loss, accuracy and error on a dataset split, as JSON.

With ``--per-class`` and ``--confusion`` it also writes the errors per class (JSON) and the confusion
picture, from the same single pass over the data. ``--split val`` evaluates the validation images a
run held out (``--val-size``); ``--tta SPEC`` averages the softmax over fixed poses of each image
(:func:`stnkit.data.tta_views`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
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
from stnkit.engine import confusion_matrix, evaluate, per_class_errors, predict, predict_views
from stnkit.models import create_model, get_pretrained
from stnkit.runs import load_run

__all__ = ["add_parser", "cmd_eval"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset's test split",
        description="Evaluate a checkpoint and print loss, accuracy and error as JSON.",
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint.pt written by `stnkit train`")
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
        help="(default test); val: the validation images the run held out (trained with --val-size)",
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
    add_data_root_argument(p)
    add_numerics_argument(p)
    p.set_defaults(func=cmd_eval)


def _tta_argument(text: str) -> list[data.TtaView]:
    """argparse type: a test-time augmentation spec -> its views."""
    try:
        return data.tta_views(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def cmd_eval(args: argparse.Namespace) -> int:
    """``stnkit eval``."""
    apply_numerics(args.numerics)  # first: torch fixes its kernels at its first computation
    if (args.checkpoint is None) == (args.pretrained is None):
        raise CliError("give a checkpoint or --pretrained NAME (one of them)")
    if args.pretrained is not None:
        entry = get_pretrained(args.pretrained)
        model = create_model(entry.name, pretrained=True)
        if args.split == "val":
            raise CliError(
                "--split val needs a checkpoint of a run trained with --val-size; shipped weights held none out"
            )
        trained_on, built_with, root, seed = entry.dataset, entry.model_kwargs, args.data_root, data.TEST_SEED
        source: dict[str, Any] = {"pretrained": entry.name, "recorded_test_error": entry.test_error}
        label = entry.name
        val_size = 0
    else:
        model, state, config = load_run(args.checkpoint)
        trained_on, built_with, root = (
            config.dataset,
            state["model_kwargs"],
            args.data_root or config.data_root,
        )
        seed = config.seed if args.split == "train" else data.TEST_SEED  # val: as training evaluated it
        source = {}
        label = f"{state['model_name']} ({args.checkpoint})"
        val_size = config.val_size
        if args.split == "val" and not val_size:
            raise CliError(
                f"--split val needs a run trained with --val-size; {args.checkpoint} held out no images"
            )
    dataset = args.dataset or trained_on
    check_dataset_fits(dataset, built_with)
    for path, flag in ((args.per_class, "--per-class"), (args.confusion, "--confusion")):
        if path is not None:  # a path that cannot be written fails here, before the data is read
            output_file(path, flag)
    loader = data.make_loader(
        dataset,
        split=args.split,
        batch_size=args.batch_size,
        root=root,
        seed=seed,
        limit=args.limit,
        shuffle=False,
        drop_last=False,
        val_size=val_size if args.split == "val" else 0,
    )
    header = {"dataset": dataset, "split": args.split, **source}
    if args.tta is not None:
        header["tta"] = [view.name for view in args.tta]
    if args.per_class is None and args.confusion is None and args.tta is None:
        metrics = evaluate(model, loader)
    else:
        title = f"{label} on {dataset} ({args.split}{', test-time augmentation' if args.tta else ''})"
        metrics = _analyse(
            model,
            loader,
            header,
            title=title,
            views=args.tta,
            per_class=args.per_class,
            confusion=args.confusion,
        )
    print(json.dumps({**header, **metrics}, indent=2))
    return 0


def _analyse(
    model: nn.Module,
    loader: data.DistortedLoader,
    header: dict[str, Any],
    *,
    title: str,
    views: Sequence[Callable[[Tensor], Tensor]] | None,
    per_class: str | None,
    confusion: str | None,
) -> dict[str, Any]:
    """One pass of predictions (averaged over ``views`` if given): the metrics, plus the per-class JSON
    and the confusion picture asked for."""
    predictions = predict(model, loader) if views is None else predict_views(model, loader, views)
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
