"""Affine warp, stnkit vs native torch: minimum over interleaved calls (robust on a loaded machine).

The minimum is what a call costs when nothing else gets in its way, so it compares code versions even
while other jobs run. To compare two versions of stnkit, run this alternately against each tree:

    .venv/bin/python benchmarks/bench_warp_min.py --threads 1 --calls 30
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/bench_warp_min.py --threads 1 --calls 30
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import stnkit

SIZES = [(256, 1, 28, 28), (256, 3, 32, 32), (256, 3, 48, 48), (16, 1, 28, 28)]


def native(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, align_corners=False)


def ours(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return stnkit.warp(image, theta, transform="affine")


def one_call(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    theta: torch.Tensor,
    backward: bool,
) -> float:
    image, theta = image.detach().requires_grad_(backward), theta.detach().requires_grad_(backward)
    start = time.perf_counter()
    out = fn(image, theta)
    if backward:
        out.backward(torch.ones_like(out))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    for size in SIZES:
        image = torch.rand(size, generator=generator)
        theta = torch.eye(2, 3) + 0.1 * torch.randn(size[0], 2, 3, generator=generator)
        for backward in (False, True):
            times: dict[str, list[float]] = {"native": [], "stnkit": []}
            for _ in range(args.calls):  # interleaved: drift hits both alike
                times["native"].append(one_call(native, image, theta, backward))
                times["stnkit"].append(one_call(ours, image, theta, backward))
            fastest = {name: min(values) for name, values in times.items()}
            label = "fwd+bwd" if backward else "fwd"
            print(
                f"{size!s:18s} {label:8s} native {fastest['native'] * 1e3:8.3f} ms  "
                f"stnkit {fastest['stnkit'] * 1e3:8.3f} ms  ratio {fastest['stnkit'] / fastest['native']:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
