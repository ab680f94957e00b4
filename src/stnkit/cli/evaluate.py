"""``stnkit eval``: a checkpoint's loss, accuracy and error on a dataset split, as JSON."""

from __future__ import annotations

import argparse
import json

import numpy as np

from stnkit import data
from stnkit.cli.common import CliError, add_data_root_argument, dataset_model_kwargs, load_run, positive_int
from stnkit.engine import evaluate

__all__ = ["add_parser", "cmd_eval"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset's test split",
        description="Evaluate a checkpoint and print loss, accuracy and error as JSON.",
    )
    p.add_argument("checkpoint", help="a checkpoint.pt written by `stnkit train`")
    p.add_argument("--dataset", help="dataset (default: the one it was trained on)")
    p.add_argument("--split", default="test", choices=("test", "train"), help="(default test)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="(default 256)")
    p.add_argument("--limit", type=positive_int, help="evaluate on this many images")
    add_data_root_argument(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """``stnkit eval``."""
    model, state, config = load_run(args.checkpoint)
    dataset = args.dataset or config.dataset
    expected = state["model_kwargs"]
    actual = dataset_model_kwargs(dataset, {})
    for key in ("in_channels", "num_classes", "image_size"):
        if key not in expected:  # built with the builder's default: nothing recorded to compare
            continue
        built_for = expected[key]
        if list(np.atleast_1d(built_for)) != list(np.atleast_1d(actual[key])):
            raise CliError(
                f"dataset {dataset!r} has {key}={actual[key]}, the model was built for {built_for}"
            )
    loader = data.make_loader(
        dataset,
        split=args.split,
        batch_size=args.batch_size,
        root=args.data_root or config.data_root,
        seed=data.TEST_SEED if args.split == "test" else config.seed,
        limit=args.limit,
        shuffle=False,
        drop_last=False,
    )
    metrics = evaluate(model, loader)
    print(json.dumps({"dataset": dataset, "split": args.split, **metrics}, indent=2))
    return 0
