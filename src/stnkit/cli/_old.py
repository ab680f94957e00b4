"""The ``stnkit`` command line: train, eval, show, export, models (and data, from stnkit.data).

``main(argv)`` returns an exit status so tests can call it: 0 success, 1 an error with a message
(bad path, corrupt checkpoint, bad value), 2 a usage error from argparse, 3 training diverged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stnkit.engine import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    CheckpointError,
    DistContext,
    DivergenceError,
    TrainConfig,
    cleanup_distributed,
    config_from_dict,
    evaluate,
    fit,
    init_distributed,
    load_checkpoint,
    read_jsonl,
)
from stnkit.models import count_parameters, create_model, list_models

__all__ = ["build_parser", "main"]

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED = 1, 2, 3
FRAMES_DIR = "frames"
PICTURES = {
    "curves": "curves.png",
    "transformer": "transformer.png",
    "gif": "transformer.gif",
}

# Train flags that map one to one onto TrainConfig fields (dest == field name).
_TRAIN_FIELDS = (
    "dataset", "model", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "loc_lr_mult", "schedule", "warmup_fraction", "grad_clip", "label_smoothing", "data_root",
    "limit", "test_limit", "num_workers", "seed", "threads", "eval_every", "snapshot_images",
)  # fmt: skip


class CliError(Exception):
    """A problem with the user's input, reported as one line and exit status 1."""


# --- parser -------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _nonneg_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a model and write a run folder (checkpoint, metrics, pictures, report)",
        description=(
            "Train a registered model on a dataset. Defaults are the main job's recipe: "
            f"{d.model} on {d.dataset}, {d.epochs} epochs, {d.optimizer} at lr {d.lr} with a "
            f"{d.schedule} schedule. Under torchrun every process runs this command (DDP, gloo)."
        ),
    )
    # Flags default to None so that only explicit ones override the config (and can be compared
    # with a resumed run's config); the shown defaults are TrainConfig's.
    p.add_argument("--dataset", help=f"dataset name (default {d.dataset})")
    p.add_argument("--model", help=f"model name, see `stnkit models` (default {d.model})")
    p.add_argument("--epochs", type=_positive_int, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=_positive_int, help=f"global batch size (default {d.batch_size})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help=f"(default {d.optimizer})")
    p.add_argument("--lr", type=_positive_float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--momentum", type=_nonneg_float, help=f"SGD momentum (default {d.momentum})")
    p.add_argument("--weight-decay", type=_nonneg_float, help=f"weight decay (default {d.weight_decay})")
    p.add_argument(
        "--loc-lr-mult",
        type=_nonneg_float,
        help=f"learning-rate multiplier of the localisation nets (default {d.loc_lr_mult})",
    )
    p.add_argument(
        "--schedule",
        choices=("onecycle", "cosine", "step", "constant"),
        help=f"learning-rate schedule (default {d.schedule})",
    )
    p.add_argument("--warmup-fraction", type=_nonneg_float, help=f"(default {d.warmup_fraction})")
    p.add_argument(
        "--grad-clip",
        type=_nonneg_float,
        help=f"max gradient norm, 0 disables (default {d.grad_clip})",
    )
    p.add_argument("--label-smoothing", type=_nonneg_float, help="(default 0)")
    p.add_argument("--data-root", help="data folder (default: $STNKIT_DATA, ../shared/data, cache)")
    p.add_argument("--limit", type=_positive_int, help="use only this many training images")
    p.add_argument("--test-limit", type=_positive_int, help="evaluate on this many test images")
    p.add_argument("--num-workers", type=int, help="data loader workers (default 0)")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--eval-every", type=_positive_int, help="evaluate every N epochs (default 1)")
    p.add_argument("--snapshot-images", type=_positive_int, help="images in the per-epoch GIF (default 16)")
    p.add_argument("--model-kwargs", help="JSON of extra builder arguments, e.g. '{\"hidden\": [64]}'")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format")
    p.add_argument(
        "--nondeterministic",
        action="store_true",
        help="do not ask torch for deterministic algorithms",
    )
    p.add_argument("--out", help="run folder (default runs/MODEL-DATASET)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (same recipe)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    """The ``stnkit`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="stnkit",
        description="Spatial Transformer Networks: train, evaluate, picture and export models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(sub)

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset's test split",
        description="Evaluate a checkpoint and print loss, accuracy and error as JSON.",
    )
    p.add_argument("checkpoint", help="a checkpoint.pt written by `stnkit train`")
    p.add_argument("--dataset", help="dataset (default: the one it was trained on)")
    p.add_argument("--split", default="test", choices=("test", "train"), help="(default test)")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="(default 256)")
    p.add_argument("--limit", type=_positive_int, help="evaluate on this many images")
    p.add_argument("--data-root", help="data folder")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "show",
        help="draw what the transformer does (grid over the input, outputs) for a checkpoint",
        description=(
            "Write transformer.png (inputs with the sampling grid drawn over them, beside the "
            "transformer's outputs) and transformer_frame.png for test images of a dataset."
        ),
    )
    p.add_argument("checkpoint", help="a checkpoint.pt of a model with a spatial transformer")
    p.add_argument("--dataset", help="dataset (default: the one it was trained on)")
    p.add_argument("--num", type=_positive_int, default=8, help="images to draw (default 8)")
    p.add_argument("--out", help="folder for the pictures (default: the checkpoint's folder)")
    p.add_argument("--data-root", help="data folder")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked against onnxruntime)",
        description="Export the classifier with its spatial transformer to ONNX.",
    )
    p.add_argument("checkpoint", help="a checkpoint.pt written by `stnkit train`")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 16 (default 18)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)

    try:
        from stnkit.data.commands import add_data_subcommands
    except ImportError:  # the data commands are optional for the rest of the CLI
        pass
    else:
        add_data_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    try:
        return int(args.func(args))
    except DivergenceError as err:
        print(f"stnkit: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except (CliError, CheckpointError, FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"stnkit {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


# --- shared helpers -----------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds third-party code that uses it)
    torch.manual_seed(seed)


def _data() -> Any:
    try:
        import stnkit.data as data
    except ImportError as err:  # pragma: no cover - the data module ships with stnkit
        raise CliError(f"stnkit.data is not available: {err}") from err
    return data


def _model_kwargs(dataset: str, extra: dict[str, Any]) -> dict[str, Any]:
    info = _data().dataset_info(dataset)
    return {
        "in_channels": int(info.in_channels),
        "num_classes": int(info.num_classes),
        "image_size": [int(s) for s in info.image_size],
        **extra,
    }


def _load_run(checkpoint: str) -> tuple[nn.Module, dict[str, Any], TrainConfig]:
    """Rebuild the model of a checkpoint with its weights, in eval mode."""
    state = load_checkpoint(checkpoint)
    config = config_from_dict(state["config"])
    model = create_model(state["model_name"], **state["model_kwargs"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model: {err}") from err
    model.eval()
    return model, state, config


def _first_images(dataset: str, count: int, *, root: str | None) -> Tensor:
    """The first ``count`` images of the canonical test set (the pictures' fixed batch)."""
    data = _data()
    loader = data.make_loader(
        dataset, split="test", batch_size=count, root=root, seed=data.TEST_SEED, limit=count
    )
    images, _ = next(iter(loader))
    return images[:count]


def _print_config(config: TrainConfig, model: nn.Module, ctx: DistContext) -> None:
    if not ctx.is_main:
        return
    print("stnkit train config:")
    for key, value in sorted(config.to_dict().items()):
        print(f"  {key}: {value}")
    print(f"  (parameters: {count_parameters(model):,}; processes: {ctx.world_size})", flush=True)


# --- train --------------------------------------------------------------------------------------


def _config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """TrainConfig with the explicitly given flags applied; also returns those flags."""
    given: dict[str, Any] = {
        name: getattr(args, name) for name in _TRAIN_FIELDS if getattr(args, name) is not None
    }
    if given.get("grad_clip") == 0:
        given["grad_clip"] = None
    if args.model_kwargs is not None:
        try:
            extra = json.loads(args.model_kwargs)
        except json.JSONDecodeError as err:
            raise CliError(f"--model-kwargs is not valid JSON: {err}") from err
        if not isinstance(extra, dict):
            raise CliError("--model-kwargs must be a JSON object")
        given["model_kwargs"] = extra
    for flag in ("compile", "channels_last"):
        if getattr(args, flag):
            given[flag] = True
    if args.nondeterministic:
        given["deterministic"] = False
    if args.no_progress:
        given["progress"] = False
    base = TrainConfig()
    model = given.get("model", base.model)
    dataset = given.get("dataset", base.dataset)
    out = args.out or f"runs/{model}-{dataset}"
    return dataclasses.replace(base, out=out, **given), given


def _resumed_config(args: argparse.Namespace, given: dict[str, Any]) -> TrainConfig:
    out = Path(args.out or "")
    if not args.out:
        raise CliError("--resume needs --out RUN_FOLDER")
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.is_file():
        raise CliError(f"--resume: no checkpoint at {ckpt} (nothing to resume)")
    saved = config_from_dict(load_checkpoint(ckpt)["config"])
    allowed = {"progress", "num_workers", "threads", "data_root"}
    differ = {
        k: (getattr(saved, k), v) for k, v in given.items() if k not in allowed and getattr(saved, k) != v
    }
    if differ:
        detail = ", ".join(f"{k}: run has {a!r}, flag gives {b!r}" for k, (a, b) in differ.items())
        raise CliError(f"--resume continues the saved recipe; these flags differ: {detail}")
    return dataclasses.replace(saved, out=str(out), **{k: v for k, v in given.items() if k in allowed})


def cmd_train(args: argparse.Namespace) -> int:
    """``stnkit train``."""
    config, given = _config_from_args(args)
    if args.resume:
        config = _resumed_config(args, given)
    out = Path(config.out)
    if not args.resume and (out / CHECKPOINT_NAME).exists():
        raise CliError(
            f"{out} already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    # main() is also a library call (tests): restore torch's global settings afterwards.
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    ctx = init_distributed()
    try:
        return _train(config, ctx, resume=args.resume)
    finally:
        cleanup_distributed()
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _train(config: TrainConfig, ctx: DistContext, *, resume: bool) -> int:
    data = _data()
    if config.batch_size % ctx.world_size:
        raise CliError(f"--batch-size {config.batch_size} is not divisible by {ctx.world_size} processes")
    model_kwargs = _model_kwargs(config.dataset, config.model_kwargs)
    _seed_everything(config.seed)  # same initial weights on every rank and every resume
    model = create_model(config.model, **model_kwargs)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    out = Path(config.out)
    train_loader = data.make_loader(
        config.dataset,
        split="train",
        batch_size=config.batch_size // ctx.world_size,
        root=config.data_root,
        seed=config.seed,
        num_workers=config.num_workers,
        limit=config.limit,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    # Every rank evaluates the whole test split: exact numbers, no padding of shards.
    test_loader = data.make_loader(
        config.dataset,
        split="test",
        batch_size=max(256, config.batch_size),
        root=config.data_root,
        seed=data.TEST_SEED,  # the canonical test set, whatever the training seed
        num_workers=config.num_workers,
        limit=config.test_limit,
    )
    snapshot = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
        _print_config(config, model, ctx)
        if getattr(model, "stn", None) is not None:
            snapshot = _first_images(config.dataset, config.snapshot_images, root=config.data_root)
            if not resume:
                _save_frame(model, snapshot, out, epoch=0)

    def on_epoch_end(epoch: int, trained: nn.Module, record: dict[str, Any]) -> None:
        from stnkit.viz import plot_curves

        # Curves and frames after every epoch, so a killed run still shows its progress.
        title = f"{config.model} on {config.dataset}"
        plot_curves(read_jsonl(out / METRICS_NAME), out / PICTURES["curves"], title=title)
        if snapshot is not None:
            _save_frame(trained, snapshot, out, epoch=epoch)

    start = time.perf_counter()
    try:
        result = fit(
            model,
            train_loader,
            test_loader,
            config,
            model_name=config.model,
            model_kwargs=model_kwargs,
            out_dir=out,
            resume=resume,
            ctx=ctx,
            on_epoch_end=on_epoch_end,
        )
    except DivergenceError as err:
        ckpt = out / CHECKPOINT_NAME
        kept = (
            f"the last good checkpoint is kept at {ckpt}"
            if ckpt.exists()
            else "no epoch finished, so there is no checkpoint"
        )
        raise DivergenceError(
            f"{err}. Stopped; {kept}. Try a lower --lr, a lower --loc-lr-mult or --grad-clip."
        ) from err
    if ctx.is_main:
        report = finish_run(out, model=model, snapshot=snapshot, config=config)
        final = result.final
        error = final.get("test_error")
        summary = f"test error {100 * error:.2f}%" if isinstance(error, float) else "done"
        print(
            f"{summary}; {time.perf_counter() - start:.0f} s this session; report: {report}",
            flush=True,
        )
    return 0


def _save_frame(model: nn.Module, images: Tensor, out: Path, *, epoch: int) -> None:
    """Write the GIF frame of ``epoch`` atomically, so a killed run never leaves a torn PNG."""
    from PIL import Image

    from stnkit.viz import transformer_frame

    frame = transformer_frame(model, images, caption=f"epoch {epoch}")
    folder = out / FRAMES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch_{epoch:04d}.png"
    tmp = path.with_suffix(".tmp")
    Image.fromarray(frame).save(tmp, format="PNG")
    os.replace(tmp, path)


def finish_run(out: Path, *, model: nn.Module, snapshot: Tensor | None, config: TrainConfig) -> Path:
    """Write the curves, the transformer pictures, the GIF and the report of a run folder."""
    from stnkit.viz import plot_curves, plot_transformer, save_gif, transformer_views, write_report

    records = read_jsonl(out / METRICS_NAME)
    title = f"{config.model} on {config.dataset}"
    plot_curves(records, out / PICTURES["curves"], title=title)
    images = [("Training curves", PICTURES["curves"])]
    if snapshot is not None:
        plot_transformer(
            snapshot,
            transformer_views(model, snapshot),
            out / PICTURES["transformer"],
            title=title,
        )
        frames = sorted((out / FRAMES_DIR).glob("epoch_*.png"))
        if frames:
            save_gif(frames, out / PICTURES["gif"])
        images += [
            ("Transformer: sampling grid over the input, and the output", PICTURES["transformer"]),
            ("Transformer output over training (inputs on top)", PICTURES["gif"]),
        ]
    return write_report(
        out,
        title=title,
        config=config.to_dict(),
        records=records,
        images=images,
        notes=[f"Machine: {_machine()}."],
    )


def _machine() -> str:
    """CPU model, cores, torch version and threads, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


# --- eval, show, export, models -----------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    """``stnkit eval``."""
    model, state, config = _load_run(args.checkpoint)
    dataset = args.dataset or config.dataset
    expected = state["model_kwargs"]
    actual = _model_kwargs(dataset, {})
    for key in ("in_channels", "num_classes", "image_size"):
        if list(np.atleast_1d(expected[key])) != list(np.atleast_1d(actual[key])):
            raise CliError(
                f"dataset {dataset!r} has {key}={actual[key]}, the model was built for {expected[key]}"
            )
    loader = _data().make_loader(
        dataset,
        split=args.split,
        batch_size=args.batch_size,
        root=args.data_root or config.data_root,
        seed=_data().TEST_SEED if args.split == "test" else config.seed,
        limit=args.limit,
        shuffle=False,
        drop_last=False,
    )
    metrics = evaluate(model, loader)
    print(json.dumps({"dataset": dataset, "split": args.split, **metrics}, indent=2))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``stnkit show``."""
    from PIL import Image

    from stnkit.viz import plot_transformer, transformer_frame, transformer_views

    model, state, config = _load_run(args.checkpoint)
    if getattr(model, "stn", None) is None:
        raise CliError(f"model {state['model_name']!r} has no input spatial transformer to show")
    dataset = args.dataset or config.dataset
    images = _first_images(dataset, args.num, root=args.data_root or config.data_root)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    title = f"{state['model_name']} on {dataset}, epoch {state['epoch']}"
    path = plot_transformer(
        images, transformer_views(model, images), out / PICTURES["transformer"], title=title
    )
    frame = transformer_frame(model, images, caption=title)
    Image.fromarray(frame).save(out / "transformer_frame.png")
    print(f"wrote {path} and {out / 'transformer_frame.png'}")
    return 0


class _Logits(nn.Module):
    """Export wrapper: plain logits, no stored ``last_params`` side effect matters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *, opset: int = 18) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch dimension."""
    if opset < 16:
        raise CliError(f"--opset must be >= 16 (GridSample), got {opset}")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise CliError(f"folder of --onnx does not exist: {path.parent}")
    wrapper = _Logits(model).eval()
    with warnings.catch_warnings():
        # The transformer keeps `last_params` for regularisers; export warns that it is not a
        # buffer, which is harmless for inference.
        warnings.filterwarnings("ignore", message=".*last_params was assigned during export")
        _onnx_export(wrapper, example, path, opset)
    return path


def _onnx_export(wrapper: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        opset_version=opset,
        dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),  # any batch size
        dynamo=True,  # the TorchScript exporter cannot trace the TPS lattice checks
        verbose=False,
    )


def onnx_max_abs_diff(model: nn.Module, path: str | Path, inputs: Tensor) -> float:
    """Largest |torch - onnxruntime| over the logits for ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(inputs).numpy()
    (got,) = session.run(["logits"], {"images": inputs.numpy()})
    return float(np.abs(got - expected).max())


def cmd_export(args: argparse.Namespace) -> int:
    """``stnkit export``."""
    model, state, _ = _load_run(args.checkpoint)
    kwargs = state["model_kwargs"]
    h, w = kwargs["image_size"]
    example = torch.rand(2, int(kwargs["in_channels"]), int(h), int(w))
    path = export_onnx(model, example, args.onnx, opset=args.opset)
    message = f"wrote {path}"
    if not args.no_check:
        diff = onnx_max_abs_diff(model, path, torch.rand(8, *example.shape[1:]))
        message += f"; onnxruntime max |difference| on random inputs: {diff:.2e}"
        if diff > 1e-4:
            print(message, file=sys.stderr)
            raise CliError(f"ONNX output differs from torch by {diff:.2e} (> 1e-4)")
    print(message)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``stnkit models``."""
    for name in list_models():
        print(name)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
