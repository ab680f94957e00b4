"""Training throughput (images/s, data included) of registered models on a dataset.

    .venv/bin/python benchmarks/bench_train.py --model st-cnn-affine cnn --dataset rts --batches 30

Runs ``train_one_epoch`` on the first ``batches * batch_size`` training images after two warm-up
batches, so the number is what the progress bar of ``stnkit train`` shows.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from stnkit.data import dataset_info, make_loader
from stnkit.engine import TrainConfig, build_optimizer, train_one_epoch
from stnkit.models import count_parameters, create_model


def measure(model_name: str, dataset: str, batch_size: int, batches: int, kwargs: dict) -> dict:
    """Images per second of one training pass over ``batches`` batches."""
    info = dataset_info(dataset)
    model = create_model(
        model_name,
        in_channels=info.in_channels,
        num_classes=info.num_classes,
        image_size=info.image_size,
        **kwargs,
    )
    optimizer = build_optimizer(model, TrainConfig(model=model_name))
    warm = make_loader(dataset, split="train", batch_size=batch_size, limit=2 * batch_size)
    train_one_epoch(model, warm, optimizer)
    loader = make_loader(dataset, split="train", batch_size=batch_size, limit=batches * batch_size)
    start = time.perf_counter()
    stats = train_one_epoch(model, loader, optimizer)
    elapsed = time.perf_counter() - start
    return {
        "model": model_name,
        "kwargs": kwargs,
        "dataset": dataset,
        "batch_size": batch_size,
        "parameters": count_parameters(model),
        "images_per_s": round(stats["images"] / elapsed, 1),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["st-cnn-affine", "cnn"])
    parser.add_argument("--dataset", default="rts")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[128])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--model-kwargs", default="{}", help="JSON builder arguments")
    args = parser.parse_args()
    for name in args.model:
        for bs in args.batch_size:
            kwargs = json.loads(args.model_kwargs)
            print(json.dumps(measure(name, args.dataset, bs, args.batches, kwargs)), flush=True)


if __name__ == "__main__":
    main()
