"""``stnkit eval``: a checkpoint's (or shipped weights') loss, accuracy and error on a dataset split, as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stnkit import data
from stnkit.cli.common import CliError, add_data_root_argument, check_dataset_fits, load_run, positive_int
from stnkit.engine import evaluate
from stnkit.models import create_model, get_pretrained

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
    p.add_argument("--split", default="test", choices=("test", "train"), help="(default test)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="(default 256)")
    p.add_argument("--limit", type=positive_int, help="evaluate on this many images")
    add_data_root_argument(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """``stnkit eval``."""
    if (args.checkpoint is None) == (args.pretrained is None):
        raise CliError("give a checkpoint or --pretrained NAME (one of them)")
    if args.pretrained is not None:
        entry = get_pretrained(args.pretrained)
        model = create_model(entry.name, pretrained=True)
        trained_on, built_with, root, seed = entry.dataset, entry.model_kwargs, args.data_root, data.TEST_SEED
        source: dict[str, Any] = {"pretrained": entry.name, "recorded_test_error": entry.test_error}
    else:
        model, state, config = load_run(args.checkpoint)
        trained_on, built_with, root = (
            config.dataset,
            state["model_kwargs"],
            args.data_root or config.data_root,
        )
        seed = data.TEST_SEED if args.split == "test" else config.seed
        source = {}
    dataset = args.dataset or trained_on
    check_dataset_fits(dataset, built_with)
    loader = data.make_loader(
        dataset,
        split=args.split,
        batch_size=args.batch_size,
        root=root,
        seed=seed,
        limit=args.limit,
        shuffle=False,
        drop_last=False,
    )
    metrics = evaluate(model, loader)
    print(json.dumps({"dataset": dataset, "split": args.split, **source, **metrics}, indent=2))
    return 0
