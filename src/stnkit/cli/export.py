"""``stnkit export``: a checkpoint to ONNX, checked against onnxruntime (see :mod:`stnkit.export`), or to
shipped pretrained weights (safetensors, see :mod:`stnkit.weights`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from stnkit.cli.common import CliError, check_not_an_input, dataset_model_kwargs
from stnkit.export import MIN_OPSET, TRANSFORMER_OUTPUTS, export_onnx, onnx_differences, require_onnx
from stnkit.models.pretrained import entry_source
from stnkit.runs import load_run
from stnkit.weights import pack_checkpoint

__all__ = ["add_parser", "cmd_export"]

TOLERANCE = 1e-4  # largest |torch - onnxruntime| accepted over each output


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit export``."""
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked against onnxruntime)",
        description="Export the classifier with its spatial transformer to ONNX.",
    )
    p.add_argument("checkpoint", help="a checkpoint.pt written by `stnkit train`")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--onnx", help="output .onnx file")
    target.add_argument(
        "--safetensors",
        metavar="OUT",
        help="output .safetensors file of pretrained weights; prints its SHA-256 and registry entry",
    )
    p.add_argument("--opset", type=int, default=18, help=f"ONNX opset, >= {MIN_OPSET} (default 18)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument(
        "--with-transformer",
        action="store_true",
        help="--onnx: also output the input transformer's parameters (theta, N x 2 x 3 for affine) and "
        "its output image (transformed), after the logits",
    )
    p.add_argument("--name", help="pretrained name MODEL.TAG (--safetensors; default MODEL.DATASET)")
    p.add_argument("--cpu", help="CPU the run trained on (--safetensors; default this machine's)")
    p.add_argument("--date", help="date it trained (--safetensors; default the checkpoint's, UTC)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """``stnkit export``."""
    safetensors = args.safetensors is not None
    target, flag = (args.safetensors, "--safetensors") if safetensors else (args.onnx, "--onnx")
    if not target:
        raise CliError(f"{flag} needs a file name, got an empty one")
    if Path(target).is_dir():  # refused before any work (the file's folder must exist already)
        raise CliError(f"{flag} {target} is a folder; give a file name")
    check_not_an_input(target, flag, [args.checkpoint])
    if args.safetensors:
        if args.with_transformer:
            raise CliError("--with-transformer is for --onnx (safetensors files hold weights, not outputs)")
        return _export_safetensors(args)
    require_onnx(runtime=not args.no_check)  # before the export, which takes seconds
    model, state, config = load_run(args.checkpoint)
    # The dataset's shape, overridden by what the checkpoint's builder arguments say.
    kwargs = dataset_model_kwargs(config.dataset, state["model_kwargs"])
    h, w = kwargs["image_size"]
    example = torch.rand(2, int(kwargs["in_channels"]), int(h), int(w))
    outputs = TRANSFORMER_OUTPUTS if args.with_transformer else ("logits",)
    try:
        path = export_onnx(model, example, args.onnx, opset=args.opset, outputs=outputs)
    except ValueError as err:
        raise CliError(f"{args.checkpoint} ({state['model_name']}): {err}") from err
    message = f"wrote {path}"
    if not args.no_check:
        diffs = onnx_differences(model, path, torch.rand(8, *example.shape[1:]))
        listed = ", ".join(f"{name} {diff:.2e}" for name, diff in diffs.items())
        message += f"; onnxruntime max |difference| on random inputs: {listed}"
        worst = max(diffs, key=diffs.__getitem__)
        if diffs[worst] > TOLERANCE:
            print(message, file=sys.stderr)
            raise CliError(f"ONNX output {worst} differs from torch by {diffs[worst]:.2e} (> {TOLERANCE:g})")
    print(message)
    return 0


def _export_safetensors(args: argparse.Namespace) -> int:
    packed = pack_checkpoint(args.checkpoint, args.safetensors, name=args.name, cpu=args.cpu, date=args.date)
    print(f"wrote {packed.path}")
    print(f"sha256 {packed.entry.sha256}")
    if not packed.finished:
        print(f"note: the checkpoint is epoch {packed.entry.provenance['epochs']}: the run did not finish")
    if packed.entry.test_error is None:
        print("note: no test error on the whole test set in the checkpoint (--test-limit?): test_error=None")
    print(
        "Ship it: copy the file to src/stnkit/models/weights/ and add this entry to PRETRAINED in "
        "src/stnkit/models/pretrained.py (check cpu and date if it trained on another machine):"
    )
    print(entry_source(packed.entry))
    return 0
