"""Warp speed: stnkit's fast path vs native torch (and kornia when installed).

Forward and forward+backward (gradients w.r.t. input and parameters) for affine, projective and TPS
warps at the paper's sizes. Variants run in one process, in interleaved rounds after a warm-up; each
cell reports the median and the spread (interquartile range) over rounds, and ratios to native torch come
last. Before timing, the variants are checked to agree numerically.

    python benchmarks/bench_warp.py                 # everything, 2 threads
    python benchmarks/bench_warp.py --quick         # fewer rounds and sizes
    python benchmarks/bench_warp.py --device cuda   # on a GPU, if there is one
    python benchmarks/bench_warp.py --path-agreement  # STNKIT_KERNELS=1 vs 0: how far apart, no timing
"""

from __future__ import annotations

import argparse
import itertools
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import stnkit
from stnkit.geometry import tps_lattice

SIZES = [
    (256, 1, 28, 28),
    (256, 1, 42, 42),
    (256, 1, 60, 60),
    (256, 3, 32, 32),
    (256, 3, 48, 48),
    (64, 3, 224, 224),
]
QUICK_SIZES = [(256, 1, 28, 28), (256, 3, 48, 48)]

WarpFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Case:
    transform: str
    variant: str
    fn: WarpFn


def native_affine(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, align_corners=False)


def stnkit_affine(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return stnkit.warp(image, theta, transform="affine")


def hand_projective(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Projective grid written the obvious way: homogeneous pixel grid @ matrix^T, divide, sample."""
    n, _, h, w = image.shape
    base = F.affine_grid(
        torch.eye(2, 3, dtype=image.dtype).expand(n, 2, 3), [n, 1, h, w], align_corners=False
    )
    ones = torch.ones(n, h, w, 1, dtype=image.dtype)
    points = torch.cat((base, ones), dim=-1).view(n, h * w, 3) @ matrix.transpose(1, 2)
    grid = (points[..., :2] / points[..., 2:]).view(n, h, w, 2)
    return F.grid_sample(image, grid, align_corners=False)


def stnkit_projective(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return stnkit.warp(image, matrix, transform="projective")


def hand_tps(image: torch.Tensor, control_points: torch.Tensor) -> torch.Tensor:
    """TPS written the obvious way: solve the spline system per call, evaluate it on the pixel grid."""
    n, _, h, w = image.shape
    k = control_points.shape[1]
    lattice = tps_lattice(k, dtype=image.dtype)

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = (a[:, None] - b[None]).square().sum(-1)
        return torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-30)), torch.zeros_like(d2))

    system = torch.zeros(k + 3, k + 3, dtype=image.dtype)
    system[:k, :k] = kernel(lattice, lattice)
    system[:k, k] = 1
    system[:k, k + 1 :] = lattice
    system[k:, :k] = system[:k, k:].T
    rhs = torch.cat((control_points, torch.zeros(n, 3, 2, dtype=image.dtype)), dim=1)
    coefficients = torch.linalg.solve(system, rhs)  # (N, K + 3, 2)
    base = F.affine_grid(torch.eye(2, 3, dtype=image.dtype)[None], [1, 1, h, w], align_corners=False)
    points = base.view(h * w, 2)
    features = torch.cat((kernel(points, lattice), torch.ones(h * w, 1, dtype=image.dtype), points), dim=1)
    grid = (features @ coefficients).view(n, h, w, 2)
    return F.grid_sample(image, grid, align_corners=False)


def stnkit_tps(image: torch.Tensor, control_points: torch.Tensor) -> torch.Tensor:
    return stnkit.warp(image, control_points, transform="tps")


def kornia_cases() -> list[Case]:
    """kornia's warp_affine / warp_perspective, fed the pixel-space matrices they expect."""
    try:
        import kornia.geometry.transform as kt
    except ImportError:
        return []

    def kornia_affine(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[2:])
        pixel = stnkit.normalized_to_pixel(theta, input_size=size, align_corners=True)
        return kt.warp_affine(image, pixel, size, align_corners=True)

    def kornia_projective(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[2:])
        pixel = stnkit.normalized_to_pixel(matrix, input_size=size, align_corners=True)
        return kt.warp_perspective(image, pixel, size, align_corners=True)

    return [Case("affine", "kornia", kornia_affine), Case("projective", "kornia", kornia_projective)]


def make_params(transform: str, n: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    noise = lambda *shape: 0.1 * torch.randn(*shape, generator=generator, dtype=dtype)  # noqa: E731
    if transform == "affine":
        return torch.eye(2, 3, dtype=dtype) + noise(n, 2, 3)
    if transform == "projective":
        matrix = torch.eye(3, dtype=dtype) + noise(n, 3, 3)
        matrix[:, 2, :2] *= 0.2
        matrix[:, 2, 2] = 1.0
        return matrix
    return tps_lattice(16, dtype=dtype) + noise(n, 16, 2)


def cases() -> list[Case]:
    return [
        Case("affine", "native", native_affine),
        Case("affine", "stnkit", stnkit_affine),
        Case("projective", "by-hand", hand_projective),
        Case("projective", "stnkit", stnkit_projective),
        Case("tps", "by-hand", hand_tps),
        Case("tps", "stnkit", stnkit_tps),
        *kornia_cases(),
    ]


def run_once(case: Case, image: torch.Tensor, params: torch.Tensor, backward: bool) -> float:
    image = image.detach().requires_grad_(backward)
    params = params.detach().requires_grad_(backward)
    if image.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = case.fn(image, params)
    if backward:
        out.backward(torch.ones_like(out))
    if image.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def check_agreement(all_cases: list[Case], image: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
    """Every variant of a transform gives the same output before anything is timed.

    The yardstick is stnkit's reference sampler in float64. stnkit's variants must come within
    float32's rounding of pixel coordinates, ``2e-7 * side + 1e-6`` (6.6e-6 at 28x28, 4.6e-5 at
    224x224; torch's own float32 grid_sample lands at about two thirds of that); the independent
    by-hand and kornia versions (float32 linear solves, their own grids) within 1e-3. kornia uses
    align_corners=True, so it is compared against stnkit with the same convention.
    """
    exact_image = image.double()
    coordinate_rounding = 2e-7 * max(image.shape[-2:]) + 1e-6
    for case in all_cases:
        p = params[case.transform]
        out = case.fn(image, p)
        if case.variant == "kornia":
            ref = stnkit.warp(exact_image, p.double(), transform=case.transform, align_corners=True)
        else:
            ref = stnkit.warp(exact_image, p.double(), transform=case.transform, backend="reference")
        error = (out.double() - ref).abs().max().item()
        tolerance = coordinate_rounding if case.variant == "stnkit" else 1e-3
        if error > tolerance:
            raise SystemExit(
                f"{case.transform}/{case.variant} disagrees with the float64 reference by {error:.2e} "
                f"(tolerance {tolerance:.1e})"
            )


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def peak_memory_mb(case: Case, image: torch.Tensor, params: torch.Tensor) -> float:
    """Extra peak memory of one forward+backward, in MiB.

    CUDA: exact, from the caching allocator's peak. CPU: torch's allocations are invisible to Python's
    tracemalloc, so the case runs in a fresh process that reports how far one forward+backward raises
    its peak resident set size (VmHWM) above where it stood with the inputs allocated.
    """
    if image.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_once(case, image, params, backward=True)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    command = [sys.executable, __file__, "--peak-memory-of", f"{case.transform}/{case.variant}"]
    command += ["--size", ",".join(str(s) for s in image.shape)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def measure_peak_rss(name: str, size: tuple[int, ...]) -> float:
    """In a fresh process: MiB by which one forward+backward of ``name`` raises the peak RSS."""
    transform, variant = name.split("/")
    case = next(c for c in cases() if c.transform == transform and c.variant == variant)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(size, generator=generator)
    params = make_params(transform, size[0], image.dtype, generator)
    # The inputs and their gradients' sizes are allocated before the baseline is read.
    image_grad, params_grad = torch.ones_like(image), torch.ones_like(params)
    del image_grad, params_grad
    before = peak_rss_kib()
    run_once(case, image, params, backward=True)
    return (peak_rss_kib() - before) / 1024


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    Linux: VmHWM from /proc/self/status. Not ru_maxrss, which a process started by another inherits
    from it across fork and exec, so a parent that had already used more memory hides the child's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def path_agreement() -> None:
    """Largest differences between the fused kernel and the torch-op path (STNKIT_KERNELS=0), float32.

    64x3x32x32, theta = identity + 0.2 * randn and the identity itself, every padding and align_corners:
    outputs, input gradients and theta gradients of the sum.
    """
    from stnkit.geometry import kernel

    available = kernel.kernel_available
    if not available():
        raise SystemExit("the fused kernel is unavailable here: nothing to compare")
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(64, 3, 32, 32, generator=generator, requires_grad=True)
    thetas = {
        "random": torch.eye(2, 3) + 0.2 * torch.randn(64, 2, 3, generator=generator),
        "identity": torch.eye(2, 3).repeat(64, 1, 1),
    }
    for (name, theta), padding_mode, align_corners in itertools.product(
        thetas.items(), ["zeros", "border", "reflection"], [False, True]
    ):
        results = []
        for use_kernel in (True, False):
            kernel.kernel_available = available if use_kernel else (lambda: False)  # type: ignore[assignment]
            t = theta.clone().requires_grad_()
            out = stnkit.warp(image, t, padding_mode=padding_mode, align_corners=align_corners)
            results.append((out, *torch.autograd.grad(out.sum(), (image, t))))
        kernel.kernel_available = available  # type: ignore[assignment]
        (out_k, gi_k, gt_k), (out_t, gi_t, gt_t) = results
        theta_relative = ((gt_k - gt_t).abs().max() / gt_t.abs().max()).item()
        print(
            f"{name:8s} {padding_mode:10s} align_corners={align_corners!s:5s} "
            f"output {(out_k - out_t).abs().max().item():.1e}  grad input {(gi_k - gi_t).abs().max().item():.1e}  "
            f"grad theta {theta_relative:.1e} relative  outputs equal: {torch.equal(out_k, out_t)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--transforms", default="affine,projective,tps")
    parser.add_argument("--path-agreement", action="store_true", help="kernel vs torch-op path, no timing")
    parser.add_argument("--peak-memory-of", help=argparse.SUPPRESS)  # internal: one case, fresh process
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_memory_of:
        torch.set_num_threads(args.threads)
        print(f"{measure_peak_rss(args.peak_memory_of, tuple(int(s) for s in args.size.split(','))):.1f}")
        return 0
    torch.set_num_threads(args.threads)
    if args.path_agreement:
        path_agreement()
        return 0
    device = torch.device(args.device)
    sizes = QUICK_SIZES if args.quick else SIZES
    rounds = 5 if args.quick else args.rounds
    wanted = set(args.transforms.split(","))
    all_cases = [c for c in cases() if c.transform in wanted]
    print(
        f"torch {torch.__version__}, {args.threads} threads, device {device}, {platform.processor() or platform.machine()}"
    )
    generator = torch.Generator().manual_seed(0)
    ratios: list[str] = []
    for size in sizes:
        image = torch.rand(size, generator=generator).to(device)
        params = {t: make_params(t, size[0], image.dtype, generator).to(device) for t in wanted}
        check_agreement(all_cases, image[:4], {t: p[:4] for t, p in params.items()})
        for backward in (False, True):
            times: dict[tuple[str, str], list[float]] = {(c.transform, c.variant): [] for c in all_cases}
            for case in all_cases:  # warm-up
                run_once(case, image, params[case.transform], backward)
            for _ in range(rounds):  # interleaved rounds: drift hits every variant alike
                for case in all_cases:
                    times[(case.transform, case.variant)].append(
                        run_once(case, image, params[case.transform], backward)
                    )
            label = "fwd+bwd" if backward else "fwd"
            for (transform, variant), values in times.items():
                q1, med, q3 = quartiles(values)
                print(
                    f"{size!s:22s} {label:8s} {transform:10s} {variant:8s} {med * 1e3:8.2f} ms  (IQR {q1 * 1e3:.2f}-{q3 * 1e3:.2f})"
                )
            for transform in sorted(wanted):
                baseline = "native" if transform == "affine" else "by-hand"
                if (transform, baseline) not in times:
                    continue
                base = statistics.median(times[(transform, baseline)])
                for (t, variant), values in times.items():
                    if t == transform and variant != baseline:
                        ratios.append(
                            f"{size!s:22s} {label:8s} {t:10s} {variant:8s} {statistics.median(values) / base:5.2f}x {baseline}"
                        )
        if size == (64, 3, 224, 224) and "affine" in wanted:
            for case in all_cases:
                if case.transform == "affine":
                    print(
                        f"peak memory fwd+bwd {case.variant}: {peak_memory_mb(case, image, params['affine']):.1f} MiB"
                    )
    print("\nratios (median time / baseline median time):")
    print("\n".join(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
