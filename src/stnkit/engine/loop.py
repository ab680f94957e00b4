"""The training loop: ``train_one_epoch``, ``evaluate`` and ``fit``; it knows no model or dataset.

A loader is anything iterable over ``(images, labels)`` batches with ``__len__``; if it has
``set_epoch(epoch)`` it is called before every epoch so the data order and the distortions are a
function of (seed, epoch). Together with a per-epoch reseed of torch this makes a resumed run
equal to an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from stnkit.engine.analysis import classification_scores, eval_logits
from stnkit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stnkit.engine.config import TrainConfig
from stnkit.engine.device import model_device, resolve_device
from stnkit.engine.distributed import DistContext, all_reduce_sum, barrier, broadcast_from_main, check_in_sync
from stnkit.engine.durable import write_text_durably
from stnkit.engine.ema import ModelEma
from stnkit.engine.metrics import append_jsonl, truncate_jsonl
from stnkit.geometry import NonFiniteError
from stnkit.numerics import numerics_in_use

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "DivergenceError",
    "FitResult",
    "Loader",
    "ResumeMismatchError",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "localization_parameters",
    "train_one_epoch",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
Batch = tuple[Tensor, Tensor]
EpochCallback = Callable[[int, nn.Module, dict[str, Any]], None]


class Loader(Protocol):
    """What the engine needs from a data loader."""

    def __iter__(self) -> Any: ...  # yields (images (B, C, H, W), labels (B,))

    def __len__(self) -> int: ...


class ResumeMismatchError(CheckpointError):
    """The checkpoint is readable but cannot continue this run (another model or world size)."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, gradient or parameter."""


@dataclass
class FitResult:
    """What :func:`fit` leaves behind."""

    history: list[dict[str, Any]]  # one metrics record per finished epoch
    checkpoint: Path  # last good checkpoint
    final: dict[str, Any]  # last record
    # the weights that were evaluated and saved as the checkpoint's "model": the EMA copy under
    # config.ema, else the trained model itself
    evaluated: nn.Module | None = None


def localization_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of every spatial transformer in ``model`` (localisation net and regression head).

    A spatial transformer is recognised by its stages: a module with ``localize`` and ``warp``
    methods (``stnkit.SpatialTransformer`` and the parallel transformer of ``stnkit.models``).
    """
    seen: set[int] = set()
    params: list[nn.Parameter] = []
    for module in model.modules():
        if callable(getattr(module, "localize", None)) and callable(getattr(module, "warp", None)):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser, with the localisation nets in their own group at ``lr * loc_lr_mult``.

    With ``weight_decay`` > 0, biases and other one-dimensional parameters (norm scales) are not
    decayed: each group is split in two, the second named ``"<group>-no-decay"``. Decaying the
    regression head's bias would pull every transformer away from the identity it starts at, towards
    the all-zero transform that samples one point; decaying its weight pulls towards the identity.
    """
    loc = localization_parameters(model)
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups: list[dict[str, Any]] = [{"params": rest, "lr": config.lr, "name": "classifier"}]
    if loc:
        groups.append({"params": loc, "lr": config.lr * config.loc_lr_mult, "name": "localization"})
    if config.weight_decay > 0:
        # Only then: with no decay the groups stay as they were, so older checkpoints still resume.
        groups = [part for group in groups for part in _split_off_no_decay(group)]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _split_off_no_decay(group: dict[str, Any]) -> list[dict[str, Any]]:
    """``group`` as its matrices and kernels, then its 1-D parameters with ``weight_decay`` 0."""
    decayed = [p for p in group["params"] if p.ndim >= 2]
    kept = [p for p in group["params"] if p.ndim < 2]
    parts = [{**group, "params": decayed}, {**group, "params": kept, "weight_decay": 0.0}]
    parts[1]["name"] = f"{group['name']}-no-decay"
    return [part for part in parts if part["params"]]


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch multiplier on every group's learning rate.

    - ``onecycle``: linear warm-up from lr/25 over ``warmup_fraction`` of the steps, then cosine
      to 0.
    - ``cosine``: cosine from lr to 0.
    - ``step``: lr divided by 10 every ``step_every`` epochs (the paper's schedule).
    - ``constant``: lr throughout.
    """
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_fraction * total) if config.schedule == "onecycle" else 0
    step_every = config.step_every or max(1, math.ceil(config.epochs / 3))

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "step":
            return 0.1 ** ((step // steps_per_epoch) // step_every)
        if step < warmup:
            return 1 / 25 + (1 - 1 / 25) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_finite_parameters(model: nn.Module, where: str) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise DivergenceError(f"parameter {name} became non-finite {where}")


class _Forward(NamedTuple):
    """One rank's forward pass: the graph when it went well, else why this rank's step diverged."""

    logits: Tensor | None  # (B, num_classes)
    loss: Tensor | None  # scalar, attached to the graph
    loss_value: float
    divergence: str | None  # None: finite loss


def _forward(model: nn.Module, images: Tensor, labels: Tensor, label_smoothing: float) -> _Forward:
    """Logits and loss of one batch; a non-finite loss or a refused warp is recorded, not raised.

    The caller agrees with the other ranks before acting on a divergence (see
    :func:`_diverged_ranks`).
    """
    try:
        logits = model(images)  # (B, num_classes)
    except NonFiniteError as err:
        # stnkit's sampler refuses non-finite transform parameters; during training that is
        # divergence, not a usage error.
        return _Forward(None, None, math.nan, str(err))
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    loss_value = float(loss.detach())
    divergence = None if math.isfinite(loss_value) else f"non-finite loss ({loss_value})"
    return _Forward(logits, loss, loss_value, divergence)


def _diverged_ranks(local_reason: str | None, ctx: DistContext) -> int:
    """How many ranks diverged in this step: one tiny all-reduce, so every rank decides alike.

    Under DDP a rank that stopped alone would leave the others waiting in the gradient
    all-reduce of ``backward``, so the decision is taken on every rank before any backward.
    """
    flag = torch.tensor([0.0 if local_reason is None else 1.0])
    return int(all_reduce_sum(flag, ctx).item())


def _divergence_message(local_reason: str | None, diverged: int, ctx: DistContext, where: str) -> str:
    if not ctx.enabled:
        return f"{local_reason} {where}"
    here = f"on rank {ctx.rank}: {local_reason}" if local_reason else f"rank {ctx.rank} was finite"
    return f"non-finite step on {diverged} of {ctx.world_size} ranks {where}; {here}"


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
    label_smoothing: float = 0.0,
    channels_last: bool = False,
    epoch: int = 1,
    epochs: int = 1,
    progress: bool = False,
    ctx: DistContext | None = None,
    ema: ModelEma | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` with a progress bar; stops at the first non-finite step.

    Under DDP every rank stops at the same step: a non-finite loss (or a refused warp) on any one
    rank raises :class:`DivergenceError` on all of them. ``ema``, if given, is updated after every
    optimiser step (from the model it was made of: ``model`` may be a DDP or compiled wrapper of it).

    Returns:
        ``loss`` (mean per image), ``accuracy``, ``images`` and ``images_per_s`` over all ranks.

    Raises:
        DivergenceError: the loss (on any rank) or the gradient norm is not finite.
    """
    ctx = ctx or DistContext()
    model.train()
    total = len(loader) if isinstance(loader, Sized) else None
    bar = tqdm(
        loader,
        total=total,
        desc=f"epoch {epoch}/{epochs}",
        disable=not (progress and ctx.is_main),
        dynamic_ncols=True,
        leave=False,
    )
    loss_sum, correct, seen = 0.0, 0, 0
    device = model_device(model)
    start = time.perf_counter()
    for step, (images, labels) in enumerate(bar):
        where = f"at epoch {epoch}, step {step + 1}"
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits, loss, loss_value, divergence = _forward(model, images, labels, label_smoothing)
        diverged = _diverged_ranks(divergence, ctx)
        if diverged or logits is None or loss is None:
            raise DivergenceError(_divergence_message(divergence, diverged, ctx, where))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The global grad norm is identical on every rank after DDP's all-reduce, so every rank
        # takes the same decision here without another collective.
        max_norm = grad_clip if grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        if not math.isfinite(grad_norm):
            raise DivergenceError(f"non-finite gradient norm ({grad_norm}) {where}")
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update()
        batch = labels.numel()
        loss_sum += loss_value * batch
        correct += int((logits.detach().argmax(dim=1) == labels).sum())
        seen += batch
        if step % 10 == 0 or step + 1 == total:
            rate = seen * ctx.world_size / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}")
    bar.close()
    elapsed = time.perf_counter() - start
    totals = all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64), ctx)
    count = max(1.0, float(totals[2]))
    return {
        "loss": float(totals[0]) / count,
        "accuracy": float(totals[1]) / count,
        "images": int(totals[2]),
        "images_per_s": float(totals[2]) / max(elapsed, 1e-9),
    }


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Batch], *, channels_last: bool = False) -> dict[str, float]:
    """Mean cross-entropy, accuracy and error (1 - accuracy) of ``model`` on ``loader``.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> batches = [(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))]
        >>> sorted(evaluate(model, batches))
        ['accuracy', 'count', 'error', 'loss']
    """
    loss_sum, correct, count = 0.0, 0, 0
    for logits, labels in eval_logits(model, loader, channels_last=channels_last):
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(dim=1) == labels).sum())
        count += labels.numel()
    return classification_scores(loss_sum, correct, count)


def fit(
    model: nn.Module,
    train_loader: Loader,
    test_loader: Loader | None,
    config: TrainConfig,
    *,
    model_name: str,
    model_kwargs: dict[str, Any],
    out_dir: str | Path,
    resume: bool = False,
    ctx: DistContext | None = None,
    on_epoch_end: EpochCallback | None = None,
    val_loader: Loader | None = None,
) -> FitResult:
    """Train ``model`` for ``config.epochs`` epochs, checkpointing after every epoch.

    Every epoch ends with (rank 0): a metrics line in ``metrics.jsonl``, then an atomic
    ``checkpoint.pt``, then ``on_epoch_end(epoch, model, record)``. A killed run resumed with
    ``resume=True`` restarts after the last checkpointed epoch and loses at most the epoch that was
    running. Under DDP (``ctx.world_size > 1``) the model is wrapped here; all ranks resume from
    the same checkpoint.

    With ``config.ema`` (a decay), an exponential moving average of the weights
    (:class:`stnkit.engine.ModelEma`) is updated after every step, and it is the average that is
    evaluated, passed to ``on_epoch_end``, returned as ``FitResult.evaluated`` and saved as the
    checkpoint's ``"model"`` (so ``stnkit eval``, ``show`` and ``export`` use it); the trained weights
    are saved beside it as ``"train_model"``, with ``"ema"`` (decay, updates), for resuming. Under
    DDP every rank updates its own average from the same trained weights. At the end of every
    epoch all ranks take rank 0's batch-norm statistics, of the trained model and of the average,
    so every rank holds what rank 0 saves.

    Args:
        model: the model, already built (and seeded) by the caller; moved to ``config.device``
            and trained in place. Under DDP, the same weights on every rank: a weight average
            starts from each rank's copy.
        train_loader: training batches; ``set_epoch`` is called if present.
        test_loader: evaluated every ``config.eval_every`` epochs and after the last; may be None.
        config: the recipe.
        model_name: registry name, stored so the checkpoint can rebuild the model.
        model_kwargs: builder arguments, stored likewise.
        out_dir: the run folder.
        resume: continue from ``out_dir/checkpoint.pt``.
        ctx: rank and world size.
        on_epoch_end: called on rank 0 after each checkpoint with the unwrapped model.
        val_loader: a validation split, evaluated whenever the test split is (``val_*`` metrics):
            recipes are chosen on it, never on the test split.

    Raises:
        DivergenceError: a non-finite loss, gradient or parameter; the last good checkpoint stays.
        ValueError: ``config.device`` is a GPU this machine lacks, or a GPU under DDP.
        CheckpointError: ``resume`` without a readable checkpoint.
        ResumeMismatchError: ``resume`` from a checkpoint of another model, with or without a
            weight average unlike ``config.ema``, or one trained with another number of processes
            (``world_size``; it decides the data sharding and the steps per epoch, hence the
            schedule). A checkpoint that predates recording the world size is taken as it is.
    """
    ctx = ctx or DistContext()
    device = resolve_device(config.device)
    if ctx.enabled and device.type != "cpu":
        raise ValueError(f"multi-process training runs on the CPU (gloo) only, not on {config.device!r}")
    model.to(device)  # before the optimiser and the average are made of its parameters
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    metrics_path = out / METRICS_NAME
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, max(1, len(train_loader)))
    start_epoch, elapsed_before, history = 0, 0.0, []
    # CPU seconds of this process (all its threads), summed over resumes like the wall time: on a
    # shared machine a run's wall time grows with the other work, its CPU time much less. None when
    # resuming a checkpoint that did not count it (its earlier epochs' share is unknown).
    cpu_before: float | None = 0.0
    ema = None if config.ema is None else ModelEma(model, decay=config.ema)
    if resume:
        state = load_checkpoint(ckpt_path)
        _check_resumable(
            state, ckpt_path, model_name=model_name, ctx=ctx, ema=config.ema, epochs=config.epochs
        )
        try:
            # Under EMA, "model" holds the average and "train_model" the weights being trained.
            model.load_state_dict(state.get("train_model", state["model"]))
        except RuntimeError as err:  # torch lists every missing/unexpected/mis-shaped tensor
            detail = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
            raise ResumeMismatchError(f"{ckpt_path}: the weights do not fit the model: {detail}") from err
        if ema is not None:
            try:
                ema.load_state_dict(state["ema"], state["model"])
            except (ValueError, RuntimeError) as err:
                raise ResumeMismatchError(
                    f"{ckpt_path}: cannot restore the weight average: {' '.join(str(err).split())}"
                ) from err
        _restore_optimizer(optimizer, scheduler, state, ckpt_path)
        start_epoch = int(state["epoch"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        cpu_before = float(state["cpu_s"]) if "cpu_s" in state else None
        if ctx.is_main:
            history = truncate_jsonl(metrics_path, max_epoch=start_epoch)
    elif ctx.is_main:
        write_text_durably(metrics_path, "")
    evaluated = model if ema is None else ema.module  # what is evaluated, pictured and saved
    barrier(ctx)

    train_model: nn.Module = model
    if ctx.enabled:
        train_model = nn.parallel.DistributedDataParallel(model)
    if config.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    record: dict[str, Any] = history[-1] if history else {}
    run_start, run_cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(start_epoch + 1, config.epochs + 1):
        # Reseed per epoch (and rank): dropout and any model randomness depend on (seed, epoch)
        # only, so a resumed run draws the same numbers as an uninterrupted one.
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + ctx.rank)
        set_epoch = getattr(train_loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        epoch_start = time.perf_counter()
        train = train_one_epoch(
            train_model,
            train_loader,
            optimizer,
            scheduler=scheduler,
            grad_clip=config.grad_clip,
            label_smoothing=config.label_smoothing,
            channels_last=config.channels_last,
            epoch=epoch,
            epochs=config.epochs,
            progress=config.progress,
            ctx=ctx,
            ema=ema,
        )
        _check_finite_parameters(model, f"after epoch {epoch}")
        # The ranks' weights agree (DDP keeps them identical), their batch-norm statistics do not:
        # DDP hands rank 0's to the trained model before every forward, so after the epoch's last
        # step each rank's also hold its own last batch, and never hands them to the average. All
        # take rank 0's, which the checkpoint keeps, so every rank evaluates, resumes from and
        # returns the same models; training is unchanged (the next forward takes rank 0's anyway).
        broadcast_from_main(model.buffers(), ctx)
        if ema is not None:
            broadcast_from_main(ema.module.buffers(), ctx)
        train_time = time.perf_counter() - epoch_start
        record = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "train_error": 1.0 - train["accuracy"],
            "images_per_s": train["images_per_s"],
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_time_s": train_time,
            # which kernels computed it (stnkit.numerics: native, or portable = capped at AVX2)
            "numerics": numerics_in_use(),
        }
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            for split, loader in (("val", val_loader), ("test", test_loader)):
                if loader is not None:
                    scores = evaluate(evaluated, loader, channels_last=config.channels_last)
                    record.update({f"{split}_{key}": scores[key] for key in ("loss", "accuracy", "error")})
        record["elapsed_s"] = elapsed_before + time.perf_counter() - run_start
        if cpu_before is not None:
            record["cpu_s"] = cpu_before + time.process_time() - run_cpu_start
        if ctx.is_main:
            append_jsonl(metrics_path, record)
            state = {
                "model_name": model_name,
                "model_kwargs": model_kwargs,
                "model": evaluated.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "world_size": ctx.world_size,  # resuming under another one is refused
                "elapsed_s": record["elapsed_s"],
                "config": config.to_dict(),
                "metrics": record,
            }
            if "cpu_s" in record:
                state["cpu_s"] = record["cpu_s"]
            if ema is not None:
                state.update(train_model=model.state_dict(), ema=ema.state_dict())
            save_checkpoint(state, ckpt_path)
            history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch, evaluated, record)
            _print_epoch(record, config.epochs)
        barrier(ctx)
    check_in_sync(model, ctx)
    return FitResult(history=history, checkpoint=ckpt_path, final=record, evaluated=evaluated)


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any], path: Path
) -> None:
    """Load the optimizer's and schedule's state, or say in one line why they do not fit.

    torch would otherwise fail with a KeyError on a damaged state, or only at the first step on a
    moment estimate of the wrong shape.
    """
    try:  # their presence was checked with the checkpoint (_check_resumable)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise ResumeMismatchError(
            f"{path}: the optimizer or schedule state does not fit this model and recipe "
            f"({type(err).__name__}: {' '.join(str(err).split())})"
        ) from err
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ResumeMismatchError(
                        f"{path}: the optimizer's {name!r} has shape {list(value.shape)}, "
                        f"its parameter {list(param.shape)}"
                    )


def _check_resumable(
    state: dict[str, Any], path: Path, *, model_name: str, ctx: DistContext, ema: float | None, epochs: int
) -> None:
    """Refuse (on every rank alike: they read the same file) a checkpoint this run cannot continue."""
    if state["epoch"] > epochs:  # the recipe is the checkpoint's own, so the file is not this run's
        raise CheckpointError(f"{path} is at epoch {state['epoch']}, beyond the recipe's {epochs} epochs")
    if state["model_name"] != model_name:
        raise ResumeMismatchError(f"{path} holds model {state['model_name']!r}, not {model_name!r}")
    averaged = "train_model" in state and "ema" in state
    if (ema is not None) != averaged:
        had = "with" if averaged else "without"
        wants = f"ema={ema}" if ema is not None else "no ema"
        raise ResumeMismatchError(f"{path} was trained {had} a weight average (ema); this run has {wants}")
    missing = [key for key in ("optimizer", "scheduler") if key not in state]
    if missing:
        raise CheckpointError(f"{path} has no {' or '.join(missing)} state, so it cannot be resumed")
    saved = state.get("world_size")
    if saved is not None and saved != ctx.world_size:
        raise ResumeMismatchError(
            f"{path} was trained with {_processes(saved)} and this run has {_processes(ctx.world_size)}: "
            f"resuming would change the data sharding and the learning-rate schedule; resume with "
            f"{'torchrun --nproc_per_node=' + str(saved) if saved > 1 else 'a single process (no torchrun)'}"
        )


def _processes(world_size: int) -> str:
    return f"{world_size} process{'es' if world_size != 1 else ''} (world size {world_size})"


def _print_epoch(record: dict[str, Any], epochs: int) -> None:
    line = (
        f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.4f}  {record['images_per_s']:.0f} img/s"
    )
    # With a validation split, that is what the epoch line shows: a recipe is chosen on it, and a
    # test error on screen every epoch invites choosing on the test set. metrics.jsonl has both.
    if "val_error" in record:
        line += f"  val loss {record['val_loss']:.4f} error {100 * record['val_error']:.2f}%"
    elif "test_error" in record:
        line += f"  test loss {record['test_loss']:.4f} error {100 * record['test_error']:.2f}%"
    print(line, flush=True)
