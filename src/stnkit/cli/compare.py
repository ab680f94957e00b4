"""``stnkit compare``: two checkpoints on one test set, where each is right and the other wrong."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stnkit import data
from stnkit.cli.common import (
    CliError,
    add_data_root_argument,
    add_numerics_argument,
    apply_numerics,
    check_dataset_fits,
    output_folder,
    positive_int,
    write_json,
)
from stnkit.engine import (
    Comparison,
    Predictions,
    compare_predictions,
    hardest_first,
    predict,
    select_examples,
)
from stnkit.machine import provenance
from stnkit.runs import load_run

__all__ = ["PICTURE_NAME", "RESULT_NAME", "add_parser", "cmd_compare"]

RESULT_NAME, PICTURE_NAME = "comparison.json", "comparison.png"
RESULT_VERSION = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit compare``."""
    p = sub.add_parser(
        "compare",
        help="two checkpoints on one test set: the images each gets right and the other wrong",
        description=(
            f"Classify a test set with two checkpoints (A and B) and write into --out {RESULT_NAME} "
            "(the positions of the test images A gets right and B wrong, the reverse, and those both "
            f"get wrong, with counts) and {PICTURE_NAME} (the hardest of the first two groups, those "
            "the wrong model was surest of, with each model's transformer output where it has one)."
        ),
    )
    p.add_argument("checkpoint_a", metavar="CKPT_A", help="checkpoint.pt of model A (e.g. the baseline)")
    p.add_argument("checkpoint_b", metavar="CKPT_B", help="checkpoint.pt of model B (e.g. the ST model)")
    p.add_argument("--out", required=True, help="folder for the JSON and the picture")
    p.add_argument("--dataset", help="dataset (default: the one both were trained on)")
    p.add_argument("--num", type=positive_int, default=8, help="images per group in the picture (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="(default 256)")
    p.add_argument("--limit", type=positive_int, help="the first N test images (default: all)")
    add_data_root_argument(p, of_a_run=True)
    add_numerics_argument(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """``stnkit compare``."""
    apply_numerics(args.numerics)  # first: torch fixes its kernels at its first computation
    model_a, state_a, config_a = load_run(args.checkpoint_a)
    model_b, state_b, config_b = load_run(args.checkpoint_b)
    # Hashed as soon as they are read, not after the work: a training that rewrites a checkpoint
    # meanwhile must not lend the record its next epoch's digest.
    source = provenance(args.argv, checkpoints=[args.checkpoint_a, args.checkpoint_b])
    if args.dataset is None and config_a.dataset != config_b.dataset:
        raise CliError(
            f"{args.checkpoint_a} was trained on {config_a.dataset!r} and {args.checkpoint_b} on "
            f"{config_b.dataset!r}; give --dataset to compare them on one that fits both"
        )
    dataset = args.dataset or config_a.dataset
    check_dataset_fits(dataset, state_a["model_kwargs"])
    check_dataset_fits(dataset, state_b["model_kwargs"])
    out = output_folder(args.out, "--out")  # before the data is read: a bad --out fails at once
    loader = data.make_loader(
        dataset,
        split="test",
        batch_size=args.batch_size,
        root=data.run_data_root(args.data_root, config_a.data_root),
        seed=data.TEST_SEED,
        limit=args.limit,
        shuffle=False,
        drop_last=False,
    )
    pred_a, pred_b = predict(model_a, loader), predict(model_b, loader)
    comparison = compare_predictions(pred_a.labels, pred_a.predictions, pred_b.predictions)
    # The hardest of each group first: the wrong model's surest mistakes.
    shown = {
        "a_right_b_wrong": hardest_first(comparison.a_right_b_wrong, pred_b.probabilities)[: args.num],
        "b_right_a_wrong": hardest_first(comparison.b_right_a_wrong, pred_a.probabilities)[: args.num],
    }
    runs = [
        _describe(args.checkpoint_a, state_a, pred_a.predictions, pred_a.labels),
        _describe(args.checkpoint_b, state_b, pred_b.predictions, pred_b.labels),
    ]
    result = {
        "version": RESULT_VERSION,
        "dataset": dataset,
        "split": "test",
        "a": runs[0],
        "b": runs[1],
        **comparison.to_dict(),
        "shown": {group: indices.tolist() for group, indices in shown.items()},
        "provenance": source,
    }
    write_json(out / RESULT_NAME, result)
    picture = _Picture(dataset, names=[f"{run['model']} ({run['checkpoint']})" for run in runs])
    _draw(picture, out / PICTURE_NAME, (model_a, model_b), (pred_a, pred_b), loader, shown, comparison)
    print(
        f"A right, B wrong: {int(comparison.a_right_b_wrong.numel())}; "
        f"B right, A wrong: {int(comparison.b_right_a_wrong.numel())}; "
        f"both wrong: {int(comparison.both_wrong.numel())} of {comparison.count}; "
        f"wrote {out / RESULT_NAME} and {out / PICTURE_NAME}"
    )
    return 0


def _describe(checkpoint: str, state: dict[str, Any], predictions: Tensor, labels: Tensor) -> dict[str, Any]:
    errors = int((predictions != labels).sum())
    return {
        "checkpoint": checkpoint,
        "model": state["model_name"],
        "epoch": state["epoch"],
        "errors": errors,
        "error": errors / max(1, labels.numel()),
    }


@dataclass(frozen=True)
class _Picture:
    dataset: str
    names: list[str]  # of models A and B


def _draw(
    picture: _Picture,
    path: Path,
    models: tuple[nn.Module, nn.Module],
    predictions: tuple[Predictions, Predictions],
    loader: data.DistortedLoader,
    shown: dict[str, Tensor],
    comparison: Comparison,
) -> None:
    """The picture of the shown images: read them from the test set again, then draw."""
    from stnkit.viz import plot_model_comparison  # matplotlib only here

    picked = torch.cat([shown["a_right_b_wrong"], shown["b_right_a_wrong"]])  # test-set positions
    if picked.numel():
        images, labels = select_examples(loader, picked)
    else:  # nothing to show: empty blocks
        images, labels = torch.zeros(0, 1, 1, 1), torch.zeros(0, dtype=torch.long)
    split, total = int(shown["a_right_b_wrong"].numel()), int(picked.numel())
    groups = [
        (_heading("A right, B wrong", comparison.a_right_b_wrong, split, "B"), range(split)),
        (_heading("B right, A wrong", comparison.b_right_a_wrong, total - split, "A"), range(split, total)),
    ]
    plot_model_comparison(
        models,
        images,
        labels,
        [p.predictions[picked] for p in predictions],
        groups,
        path,
        model_names=picture.names,
        class_names=data.class_names(picture.dataset),
        title=f"{picture.dataset} test images ({comparison.count}) where one model is right and the other wrong",
    )


def _heading(what: str, group: Tensor, shown: int, wrong: str) -> str:
    count = int(group.numel())
    if shown == count:
        return f"{what}: all {count}"
    return f"{what}: {count}, the {shown} that {wrong} was surest of"
