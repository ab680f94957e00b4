"""``stnkit train``: flags -> TrainConfig -> data loaders, model -> engine.fit -> pictures, report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stnkit import data
from stnkit.cli.common import (
    CliError,
    add_data_root_argument,
    add_numerics_argument,
    apply_numerics,
    check_dataset_fits,
    dataset_model_kwargs,
    nonneg_float,
    output_folder,
    positive_float,
    positive_int,
)
from stnkit.engine import (
    CHECKPOINT_NAME,
    MAX_SNAPSHOT_IMAGES,
    METRICS_NAME,
    DistContext,
    DivergenceError,
    TrainConfig,
    cleanup_distributed,
    config_from_dict,
    fit,
    init_distributed,
    load_checkpoint,
    read_jsonl,
    resolve_device,
)
from stnkit.models import count_parameters, create_model

__all__ = ["add_parser", "cmd_train"]

# Train flags that map one to one onto TrainConfig fields (dest == field name).
_TRAIN_FIELDS = (
    "dataset", "model", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "loc_lr_mult", "schedule", "warmup_fraction", "grad_clip", "label_smoothing", "data_root",
    "limit", "test_limit", "val_size", "num_workers", "seed", "threads", "eval_every", "snapshot_images",
    "augment", "ema", "device", "numerics",
)  # fmt: skip


_NO_AUGMENT = "none"


def _augment_argument(text: str) -> str:
    """argparse type: an augmentation spec -> its canonical string ("none" for no augmentation).

    "none" and not None, so that an explicit ``--augment none`` is told apart from no flag (and
    ``--resume`` of a jittered run with it is refused); the config stores None.
    """
    try:
        spec = data.parse_augment(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return _NO_AUGMENT if spec.is_identity else spec.to_string()


def _decay(text: str) -> float:
    """argparse type: a number in (0, 1)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), e.g. 0.999, got {text}")
    return value


# The main job: what `stnkit train` trains when no --dataset or --model is given.
MAIN_JOB_DATASET, MAIN_JOB_MODEL = "rts", "st-cnn-affine"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit train``."""
    d = TrainConfig(dataset=MAIN_JOB_DATASET, model=MAIN_JOB_MODEL)
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
    p.add_argument("--epochs", type=positive_int, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, help=f"global batch size (default {d.batch_size})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help=f"(default {d.optimizer})")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--momentum", type=nonneg_float, help=f"SGD momentum (default {d.momentum})")
    p.add_argument(
        "--weight-decay",
        type=nonneg_float,
        help=f"weight decay of weight matrices and kernels, never of biases (default {d.weight_decay})",
    )
    p.add_argument(
        "--loc-lr-mult",
        type=nonneg_float,
        help=f"learning-rate multiplier of the localisation nets (default {d.loc_lr_mult})",
    )
    p.add_argument(
        "--schedule",
        choices=("onecycle", "cosine", "step", "constant"),
        help=f"learning-rate schedule (default {d.schedule})",
    )
    p.add_argument("--warmup-fraction", type=nonneg_float, help=f"(default {d.warmup_fraction})")
    p.add_argument(
        "--grad-clip",
        type=nonneg_float,
        help=f"max gradient norm, 0 disables (default {d.grad_clip})",
    )
    p.add_argument("--label-smoothing", type=nonneg_float, help="(default 0)")
    p.add_argument(
        "--ema",
        type=_decay,
        metavar="DECAY",
        help=(
            "keep an exponential moving average of the weights with this decay (e.g. 0.999) and "
            "evaluate, save and export it instead of the last weights (default off)"
        ),
    )
    add_data_root_argument(p)
    p.add_argument("--limit", type=positive_int, help="use only this many training images")
    p.add_argument("--test-limit", type=positive_int, help="evaluate on this many test images")
    p.add_argument(
        "--val-size",
        type=int,
        help="hold out the last N training images as a validation split, evaluated with the test split",
    )
    p.add_argument("--num-workers", type=int, help="data loader workers (default 0)")
    p.add_argument(
        "--augment",
        type=_augment_argument,
        metavar="SPEC",
        help=(
            "jitter the training images on the fly: a preset (gtsrb) or key=value pairs, e.g. "
            "rotate=15,scale=0.1,shift=2,perspective=0.05,brightness=0.2,contrast=0.2 "
            "(default none; see docs/training.md)"
        ),
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    add_numerics_argument(p)
    p.add_argument(
        "--device",
        help="cpu (default), cuda or cuda:N; multi-process (torchrun) training stays on the CPU",
    )
    p.add_argument("--eval-every", type=positive_int, help="evaluate every N epochs (default 1)")
    p.add_argument(
        "--snapshot-images",
        type=positive_int,
        help=f"images in the per-epoch GIF (default 16, at most {MAX_SNAPSHOT_IMAGES})",
    )
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds third-party code that uses it)
    torch.manual_seed(seed)


def _print_config(config: TrainConfig, model: nn.Module, ctx: DistContext) -> None:
    if not ctx.is_main:
        return
    print("stnkit train config:")
    for key, value in sorted(config.to_dict().items()):
        print(f"  {key}: {value}")
    print(f"  (parameters: {count_parameters(model):,}; processes: {ctx.world_size})", flush=True)


def _config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """TrainConfig with the explicitly given flags applied; also returns those flags."""
    given: dict[str, Any] = {
        name: getattr(args, name) for name in _TRAIN_FIELDS if getattr(args, name) is not None
    }
    if given.get("grad_clip") == 0:
        given["grad_clip"] = None
    if given.get("augment") == _NO_AUGMENT:
        given["augment"] = None
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
    named = {"dataset": MAIN_JOB_DATASET, "model": MAIN_JOB_MODEL, **given}
    out = args.out or f"runs/{named['model']}-{named['dataset']}"
    return TrainConfig(**{**named, "out": out}), given


def _resumed_config(args: argparse.Namespace, given: dict[str, Any]) -> TrainConfig:
    out = Path(args.out or "")
    if not args.out:
        raise CliError("--resume needs --out RUN_FOLDER")
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.is_file():
        raise CliError(f"--resume: no checkpoint at {ckpt} (nothing to resume)")
    try:
        saved = config_from_dict(load_checkpoint(ckpt)["config"])
    except ValueError as err:  # a config the checkpoint holds, not one of these flags
        raise CliError(f"--resume: the config saved in {ckpt} is not valid: {err}") from err
    allowed = {"progress", "num_workers", "threads", "data_root", "device"}
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
    # main() is also a library call (tests): restore torch's global settings afterwards.
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    apply_numerics(config.numerics)  # first: torch fixes its kernels at its first computation
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


def _evaluation_loader(config: TrainConfig, split: str, **extra: Any) -> data.DistortedLoader:
    """A fixed evaluation split: the same images for every run whatever its seed (``TEST_SEED``).

    Every rank evaluates the whole split: exact numbers, no padding of shards.
    """
    return data.make_loader(
        config.dataset,
        split=split,
        batch_size=max(256, config.batch_size),
        root=config.data_root,
        seed=data.TEST_SEED,
        num_workers=config.num_workers,
        pin_memory=config.device != "cpu",
        **extra,
    )


def _augment_spec(config: TrainConfig) -> data.AugmentSpec | None:
    """The training jitter of the recipe (the validation, test and picture loaders never get one)."""
    if config.augment is None:
        return None
    try:
        return data.parse_augment(config.augment)
    except ValueError as err:  # a hand-edited or foreign config.json
        raise CliError(f"the recipe's augment: {err}") from err


def _train(config: TrainConfig, ctx: DistContext, *, resume: bool) -> int:
    from stnkit.viz import finish_run, plot_curves, save_epoch_frame
    from stnkit.viz.run import PICTURES

    if config.batch_size % ctx.world_size:
        raise CliError(f"--batch-size {config.batch_size} is not divisible by {ctx.world_size} processes")
    resolve_device(config.device)  # a GPU this machine lacks fails here, before the data is read
    # The dataset decides channels, classes and image size; --model-kwargs may not contradict it.
    check_dataset_fits(config.dataset, config.model_kwargs, source="--model-kwargs asks for")
    model_kwargs = dataset_model_kwargs(config.dataset, config.model_kwargs)
    _seed_everything(config.seed)  # same initial weights on every rank and every resume
    model = create_model(config.model, **model_kwargs)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    out = Path(config.out)
    if ctx.is_main:
        # Before the data is read, so an unwritable --out fails at once.
        output_folder(out, "--out")
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
        val_size=config.val_size,
        augment=_augment_spec(config),
        pin_memory=config.device != "cpu",  # page-locked batches copy to a GPU without a stall
    )
    val_loader = _evaluation_loader(config, "val", val_size=config.val_size) if config.val_size else None
    test_loader = _evaluation_loader(config, "test", limit=config.test_limit)
    title = f"{config.model} on {config.dataset}"
    snapshot = None
    if ctx.is_main:
        config.save(out / "config.json")
        _print_config(config, model, ctx)
        if getattr(model, "stn", None) is not None:
            snapshot = data.first_test_images(config.dataset, config.snapshot_images, root=config.data_root)
            if not resume:
                save_epoch_frame(model, snapshot, out, epoch=0)

    def on_epoch_end(epoch: int, trained: nn.Module, record: dict[str, Any]) -> None:
        # Curves and frames after every epoch, so a killed run still shows its progress.
        plot_curves(read_jsonl(out / METRICS_NAME), out / PICTURES["curves"], title=title)
        if snapshot is not None:
            save_epoch_frame(trained, snapshot, out, epoch=epoch)

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
            val_loader=val_loader,
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
        report = finish_run(
            out,
            model=result.evaluated or model,
            snapshot=snapshot,
            records=read_jsonl(out / METRICS_NAME),
            config=config.to_dict(),
            title=title,
        )
        error = result.final.get("test_error")
        summary = f"test error {100 * error:.2f}%" if isinstance(error, float) else "done"
        print(
            f"{summary}; {time.perf_counter() - start:.0f} s this session; report: {report}",
            flush=True,
        )
    return 0
