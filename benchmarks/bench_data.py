"""Throughput of the data pipeline: distorted images per second, per variant.

    .venv/bin/python benchmarks/bench_data.py [--batch-size 256] [--batches 20] [--workers 0 2]
        [--threads N] [--datasets rts tc ...]

Measures (a) the batched distortion alone (``BatchDataset.batch``: index, warp, labels) in the
main process with torch's default threads, and (b) a full epoch slice through ``make_loader``
with ``num_workers`` worker processes (each worker uses one thread). Parameter sampling for the
whole epoch happens once per epoch per process and is included in (b).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from stnkit.data import list_datasets, make_loader


def bench_batches(name: str, batch_size: int, batches: int) -> float:
    """Images/s of BatchDataset.batch on the training split (epoch params already drawn)."""
    loader = make_loader(name, split="train", batch_size=batch_size, seed=0)
    dataset = loader.dataset
    dataset.params()  # draw this epoch's parameters outside the timing
    order = dataset.indices()
    dataset.batch(order[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(batches):
        dataset.batch(order[i * batch_size : (i + 1) * batch_size])
    return batches * batch_size / (time.perf_counter() - start)


def bench_loader(name: str, batch_size: int, batches: int, workers: int) -> float:
    """Images/s through make_loader(..., num_workers=workers), including worker start-up."""
    loader = make_loader(
        name, split="train", batch_size=batch_size, seed=0, num_workers=workers,
        limit=batch_size * batches,
    )  # fmt: skip
    start = time.perf_counter()
    count = sum(images.shape[0] for images, _ in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--datasets", nargs="*", default=list_datasets())
    parser.add_argument("--threads", type=int, default=None, help="torch threads (main process)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, batch {args.batch_size}"
    )
    header = f"{'dataset':10s} {'batch() img/s':>14s}" + "".join(
        f" {f'loader w={w} img/s':>18s}" for w in args.workers
    )
    print(header)
    for name in args.datasets:
        row = f"{name:10s} {bench_batches(name, args.batch_size, args.batches):14,.0f}"
        for w in args.workers:
            row += f" {bench_loader(name, args.batch_size, args.batches, w):18,.0f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
