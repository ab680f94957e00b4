"""``stnkit export``: a checkpoint to ONNX, checked against onnxruntime (see :mod:`stnkit.export`)."""

from __future__ import annotations

import argparse
import sys

import torch

from stnkit.cli.common import CliError, load_run
from stnkit.export import MIN_OPSET, export_onnx, onnx_max_abs_diff, require_onnx

__all__ = ["add_parser", "cmd_export"]

TOLERANCE = 1e-4  # largest |torch - onnxruntime| accepted over the logits


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit export``."""
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked against onnxruntime)",
        description="Export the classifier with its spatial transformer to ONNX.",
    )
    p.add_argument("checkpoint", help="a checkpoint.pt written by `stnkit train`")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=18, help=f"ONNX opset, >= {MIN_OPSET} (default 18)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """``stnkit export``."""
    require_onnx(runtime=not args.no_check)  # before the export, which takes seconds
    model, state, _ = load_run(args.checkpoint)
    kwargs = state["model_kwargs"]
    h, w = kwargs["image_size"]
    example = torch.rand(2, int(kwargs["in_channels"]), int(h), int(w))
    path = export_onnx(model, example, args.onnx, opset=args.opset)
    message = f"wrote {path}"
    if not args.no_check:
        diff = onnx_max_abs_diff(model, path, torch.rand(8, *example.shape[1:]))
        message += f"; onnxruntime max |difference| on random inputs: {diff:.2e}"
        if diff > TOLERANCE:
            print(message, file=sys.stderr)
            raise CliError(f"ONNX output differs from torch by {diff:.2e} (> {TOLERANCE:g})")
    print(message)
    return 0
