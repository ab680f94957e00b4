"""Training speed of registered models: step time on a fixed batch, and images/s with the data.

    python benchmarks/bench_train.py                                   # ST-CNN vs CNN on RTS
    python benchmarks/bench_train.py --model st-cnn-affine cnn st-fcn-affine fcn --compile
    python benchmarks/bench_train.py --dataset mnist --batch-size 256 --compile
    python benchmarks/bench_train.py --numerics portable  # kernels capped at AVX2 (stnkit.numerics)

* step time: forward + backward + optimiser step on one fixed batch (no data generation), median over
  ``--steps`` steps after a warm-up, eager and (with ``--compile``) ``torch.compile``d. Models are
  timed in interleaved rounds so drift on a shared machine hits them alike.
* images/s: ``train_one_epoch`` over ``--batches`` batches, data generation included, as the
  progress bar of ``stnkit train`` shows it.
* ratios: each ST model's step time over its baseline's (``st-cnn-*`` over ``cnn``, ``st-fcn-*``
  and ``2xst-fcn-*`` over ``fcn``), when both are in the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stnkit.data import dataset_info, make_loader
from stnkit.engine import TrainConfig, build_optimizer, train_one_epoch
from stnkit.models import count_parameters, create_model
from stnkit.numerics import NUMERICS, numerics_in_use, use_numerics


def build(model_name: str, dataset: str, kwargs: dict[str, Any]) -> nn.Module:
    info = dataset_info(dataset)
    return create_model(
        model_name,
        in_channels=info.in_channels,
        num_classes=info.num_classes,
        image_size=info.image_size,
        **kwargs,
    )


def make_step(
    model: nn.Module, compiled: bool
) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], nn.Module]:
    """One training step (forward, backward, Adam) as a closure, optionally on a compiled model."""
    optimizer = build_optimizer(model, TrainConfig(dataset="rts", model="st-cnn-affine"))
    forward = torch.compile(model) if compiled else model

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = F.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, model


def step_times(
    names: list[str], dataset: str, batch_size: int, steps: int, compiled: bool, kwargs: dict[str, Any]
) -> dict[str, float]:
    """Median step time (s) per model on one fixed batch of real distorted images."""
    images, labels = next(iter(make_loader(dataset, split="train", batch_size=batch_size, limit=batch_size)))
    steppers = {}
    for name in names:
        torch.manual_seed(0)
        step, _ = make_step(build(name, dataset, kwargs), compiled)
        for _ in range(3):  # warm-up (and compilation)
            step(images, labels)
        steppers[name] = step
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(steps):
        for name, step in steppers.items():
            start = time.perf_counter()
            step(images, labels)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def images_per_second(
    model_name: str, dataset: str, batch_size: int, batches: int, kwargs: dict[str, Any]
) -> float:
    """Images/s of ``train_one_epoch`` over ``batches`` batches, data generation included."""
    model = build(model_name, dataset, kwargs)
    optimizer = build_optimizer(model, TrainConfig(dataset="rts", model=model_name))
    warm = make_loader(dataset, split="train", batch_size=batch_size, limit=2 * batch_size)
    train_one_epoch(model, warm, optimizer, progress=False)
    loader = make_loader(dataset, split="train", batch_size=batch_size, limit=batches * batch_size)
    start = time.perf_counter()
    stats = train_one_epoch(model, loader, optimizer, progress=False)
    return float(stats["images"]) / (time.perf_counter() - start)


def baseline_of(name: str) -> str | None:
    if name.startswith("st-cnn"):
        return "cnn"
    if name.startswith(("st-fcn", "2xst-fcn")):
        return "fcn"
    if name.startswith("2xst-cnn"):
        return "cnn"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", nargs="+", default=["st-cnn-affine", "cnn"])
    parser.add_argument("--dataset", default="rts")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--batches", type=int, default=20, help="batches for the images/s pass (0: skip)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-kwargs", default="{}", help="JSON builder arguments for every model")
    parser.add_argument(
        "--numerics",
        choices=NUMERICS,
        default="native",
        help="stnkit.numerics (default: native, as the CLI)",
    )
    args = parser.parse_args()
    use_numerics(args.numerics)  # before anything computes
    torch.set_num_threads(args.threads)
    kwargs = json.loads(args.model_kwargs)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {args.dataset}, "
        f"batch {args.batch_size}, numerics {numerics_in_use()} ({torch.backends.cpu.get_cpu_capability()})"
    )
    modes = [False, True] if args.compile else [False]
    for compiled in modes:
        label = "compiled" if compiled else "eager"
        times = step_times(args.model, args.dataset, args.batch_size, args.steps, compiled, kwargs)
        for name, seconds in times.items():
            params = count_parameters(build(name, args.dataset, kwargs))
            print(
                f"{label:8s} {name:18s} params {params:9,d}  step {seconds * 1e3:8.1f} ms  "
                f"{args.batch_size / seconds:9,.0f} images/s (model only)"
            )
        for name, seconds in times.items():
            base = baseline_of(name)
            if base in times:
                print(f"{label:8s} ratio {name} / {base}: {seconds / times[base]:.2f}x step time")
    if args.batches:
        for name in args.model:
            rate = images_per_second(name, args.dataset, args.batch_size, args.batches, kwargs)
            print(f"with data {name:18s} {rate:9,.0f} images/s (train_one_epoch, eager)")


if __name__ == "__main__":
    main()
