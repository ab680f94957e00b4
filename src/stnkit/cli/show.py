"""``stnkit show``: the sampling grid over test inputs, beside the transformer's outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from stnkit.cli.common import (
    CliError,
    add_data_root_argument,
    check_dataset_fits,
    output_folder,
    positive_int,
)
from stnkit.data import first_test_images, run_data_root
from stnkit.models import create_model, get_pretrained
from stnkit.runs import load_run

__all__ = ["add_parser", "cmd_show"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit show``."""
    p = sub.add_parser(
        "show",
        help="draw what the transformer does (grid over the input, outputs) for a checkpoint",
        description=(
            "Write transformer.png (inputs with the sampling grid drawn over them, beside the "
            "transformer's outputs) and transformer_frame.png for test images of a dataset."
        ),
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint.pt of a model with a spatial transformer")
    p.add_argument("--pretrained", metavar="NAME", help="draw shipped weights instead (needs --out)")
    p.add_argument("--dataset", help="dataset (default: the one it was trained on)")
    p.add_argument("--num", type=positive_int, default=8, help="images to draw (default 8)")
    p.add_argument("--out", help="folder for the pictures (default: the checkpoint's folder)")
    add_data_root_argument(p, of_a_run=True)
    p.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    """``stnkit show``."""
    from PIL import Image

    from stnkit.viz import PICTURES, plot_transformer, transformer_frame, transformer_views

    if (args.checkpoint is None) == (args.pretrained is None):
        raise CliError("give a checkpoint or --pretrained NAME (one of them)")
    if args.pretrained is not None:
        if not args.out:
            raise CliError("--pretrained needs --out FOLDER for the pictures")
        entry = get_pretrained(args.pretrained)
        model = create_model(entry.name, pretrained=True)
        model_name, trained_on, root, when = entry.model, entry.dataset, args.data_root, entry.name
        built_with = entry.model_kwargs
    else:
        model, state, config = load_run(args.checkpoint)
        model_name, trained_on = state["model_name"], config.dataset
        root, when = run_data_root(args.data_root, config.data_root), f"epoch {state['epoch']}"
        built_with = state["model_kwargs"]
    if getattr(model, "stn", None) is None:
        raise CliError(f"model {model_name!r} has no input spatial transformer to show")
    dataset = args.dataset or trained_on
    check_dataset_fits(dataset, built_with)
    # Before the data is read: a bad --out fails at once.
    out = output_folder(args.out, "--out") if args.out else Path(args.checkpoint).parent
    images = first_test_images(dataset, args.num, root=root)
    title = f"{model_name} on {dataset}, {when}"
    path = plot_transformer(
        images, transformer_views(model, images), out / PICTURES["transformer"], title=title
    )
    frame = transformer_frame(model, images, caption=title)
    Image.fromarray(frame).save(out / "transformer_frame.png")
    print(f"wrote {path} and {out / 'transformer_frame.png'}")
    return 0
