"""The fused C++ affine kernel: agrees with torch and the reference sampler, builds, caches, falls back."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.geometry import PADDING_MODES, fast, kernel

HAS_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None
# The build flags are GCC's (-fopenmp, -march=native); elsewhere the kernel may rightly be unavailable.
needs_kernel = pytest.mark.skipif(
    not HAS_COMPILER or sys.platform != "linux" or os.environ.get("STNKIT_KERNELS") == "0",
    reason="needs Linux, a C++ compiler and kernels not switched off (STNKIT_KERNELS=0)",
)

# Sampling maps that exercise different tap patterns: the scatter's carried sums (near identity, zoom
# in), jumps (zoom out), arbitrary maps, and points far outside the input.
THETA_KINDS = {
    "near_identity": lambda n: torch.eye(2, 3) + 0.03 * torch.randn(n, 2, 3),
    "zoom_in": lambda n: 0.4 * torch.eye(2, 3) + 0.05 * torch.randn(n, 2, 3),
    "zoom_out": lambda n: 2.5 * torch.eye(2, 3) + 0.1 * torch.randn(n, 2, 3),
    "arbitrary": lambda n: torch.eye(2, 3) + torch.randn(n, 2, 3),
    "far_outside": lambda n: (torch.eye(2, 3) + torch.tensor([[0.0, 0.0, 40.0], [0.0, 0.0, -1e6]])).repeat(
        n, 1, 1
    ),
}


@pytest.fixture
def fresh_loader_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test load the kernel anew (other settings, other cache) without touching other tests."""
    monkeypatch.setattr(kernel, "_library", None)
    monkeypatch.setattr(kernel, "_load_attempted", False)
    yield


def torch_warp(
    image: torch.Tensor, theta: torch.Tensor, out: tuple[int, int], padding_mode: str, align_corners: bool
) -> torch.Tensor:
    grid = F.affine_grid(theta, [image.shape[0], image.shape[1], *out], align_corners=align_corners)
    return F.grid_sample(image, grid, padding_mode=padding_mode, align_corners=align_corners)


@needs_kernel
def test_kernel_is_built_where_there_is_a_compiler() -> None:
    assert kernel.kernel_available()
    image, theta = torch.rand(2, 1, 5, 5), torch.eye(2, 3).expand(2, 2, 3)
    assert fast._fused_kernel_applies(image, theta, "bilinear")
    assert not fast._fused_kernel_applies(image, theta, "nearest")
    assert not fast._fused_kernel_applies(image.half(), theta.half(), "bilinear")


@needs_kernel
@pytest.mark.parametrize(
    ("kind", "padding_mode", "align_corners"),
    list(itertools.product(THETA_KINDS, PADDING_MODES, [False, True])),
)
@pytest.mark.parametrize("channels", [2, 3])  # 3 has loops of its own in the kernel
def test_kernel_matches_torch_in_float64(
    kind: str,
    padding_mode: str,
    align_corners: bool,
    channels: int,
    assert_same_outputs_and_gradients: Callable[..., None],
    assert_fast_path_ran: Callable[..., None],
) -> None:
    torch.manual_seed(0)
    image = torch.randn(4, channels, 9, 13, dtype=torch.float64, requires_grad=True)
    theta = THETA_KINDS[kind](4).double().requires_grad_()
    ours = stnkit.warp(
        image,
        theta,
        transform="affine",
        out_size=(11, 7),
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    assert_fast_path_ran(ours, fused=True)
    theirs = torch_warp(image, theta, (11, 7), padding_mode, align_corners)
    assert_same_outputs_and_gradients(ours, theirs, (image, theta))


@needs_kernel
@pytest.mark.parametrize(
    ("padding_mode", "align_corners"), list(itertools.product(PADDING_MODES, [False, True]))
)
@pytest.mark.parametrize("channels", [1, 3])
def test_kernel_matches_reference_in_float32_on_a_parallel_batch(
    padding_mode: str, align_corners: bool, channels: int, assert_fast_path_ran: Callable[..., None]
) -> None:
    # 40 x C x 32 x 32 outputs: enough work for the kernel's OpenMP loop to split the batch.
    torch.manual_seed(1)
    image = torch.rand(40, channels, 32, 32, requires_grad=True)
    theta = (torch.eye(2, 3) + 0.2 * torch.randn(40, 2, 3)).requires_grad_()
    kwargs = {"transform": "affine", "padding_mode": padding_mode, "align_corners": align_corners}
    ours = stnkit.warp(image, theta, **kwargs)  # type: ignore[arg-type]
    assert_fast_path_ran(ours, fused=True)
    reference = stnkit.warp(image.double(), theta.double(), backend="reference", **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(ours, reference.float(), rtol=0, atol=1e-5)
    upstream = torch.randn_like(ours)
    grads_ours = torch.autograd.grad(ours, (image, theta), upstream)
    grads_reference = torch.autograd.grad(reference, (image, theta), upstream.double())
    # An input pixel's gradient sums the float32 contributions of several output points.
    torch.testing.assert_close(grads_ours[0], grads_reference[0].float(), rtol=1e-5, atol=5e-5)
    # theta's gradient sums 1,024 terms per entry: relative tolerance.
    torch.testing.assert_close(grads_ours[1], grads_reference[1].float(), rtol=1e-4, atol=1e-3)


@needs_kernel
@pytest.mark.parametrize(("need_input", "need_theta"), [(True, False), (False, True), (True, True)])
def test_kernel_returns_just_the_gradients_asked_for(
    need_input: bool, need_theta: bool, assert_fast_path_ran: Callable[..., None]
) -> None:
    image = torch.randn(3, 2, 6, 6, dtype=torch.float64, requires_grad=need_input)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.2 * torch.randn(3, 2, 3, dtype=torch.float64)
    ).requires_grad_(need_theta)
    ours = stnkit.warp(image, theta, transform="affine")
    assert_fast_path_ran(ours, fused=True)
    theirs = torch_warp(image, theta, (6, 6), "zeros", False)
    wanted = [t for t in (image, theta) if t.requires_grad]
    for got, expected in zip(
        torch.autograd.grad(ours.sum(), wanted), torch.autograd.grad(theirs.sum(), wanted)
    ):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@needs_kernel
def test_kernel_gradcheck(assert_fast_path_ran: Callable[..., None]) -> None:
    image = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(2, 2, 3, dtype=torch.float64)
    ).requires_grad_()
    assert_fast_path_ran(stnkit.warp(image, theta, transform="affine", out_size=(4, 7)), fused=True)
    for padding_mode, align_corners in itertools.product(PADDING_MODES, [False, True]):
        assert torch.autograd.gradcheck(
            lambda i, t, p=padding_mode, a=align_corners: stnkit.warp(
                i, t, transform="affine", out_size=(4, 7), padding_mode=p, align_corners=a
            ),
            (image, theta),
        )


@needs_kernel
@pytest.mark.parametrize("size", [(1, 1), (1, 5), (9, 13), (28, 28), (224, 224)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_identity_returns_the_input_bit_for_bit(size: tuple[int, int], dtype: torch.dtype) -> None:
    image = torch.randn(2, 3, *size, dtype=dtype)
    identity = torch.eye(2, 3, dtype=dtype).expand(2, 2, 3)
    for padding_mode, align_corners in itertools.product(PADDING_MODES, [False, True]):
        out = stnkit.warp(
            image, identity, transform="affine", padding_mode=padding_mode, align_corners=align_corners
        )
        assert torch.equal(out, image), (padding_mode, align_corners)


@needs_kernel
def test_kernel_gradient_at_the_identity_is_the_forward_difference() -> None:
    # At the identity every sampling point sits exactly on a pixel, where bilinear sampling has only
    # one-sided derivatives. The kernel's points are exact, so torch's formula gives the forward
    # difference everywhere: d out[h, w] / d x_in = I[h, w + 1] - I[h, w] (0 beyond the edge, zeros
    # padding), and d x_in / d theta[0, 2] = W / 2.
    torch.manual_seed(3)
    image = torch.rand(2, 1, 5, 7, dtype=torch.float64)
    theta = torch.eye(2, 3, dtype=torch.float64).repeat(2, 1, 1).requires_grad_()
    upstream = torch.randn(2, 1, 5, 7, dtype=torch.float64)
    (grad,) = torch.autograd.grad(stnkit.warp(image, theta, transform="affine"), theta, upstream)
    next_column = F.pad(image[..., 1:], (0, 1))
    expected = (upstream * (next_column - image)).sum(dim=(1, 2, 3)) * 7 / 2
    torch.testing.assert_close(grad[:, 0, 2], expected, rtol=1e-12, atol=1e-12)


@needs_kernel
def test_kernel_skips_non_finite_values_that_torch_skips(assert_fast_path_ran: Callable[..., None]) -> None:
    # Taps outside the image are never read: an inf stored where an outside tap would point (offset 0)
    # must not turn into NaN through 0 * inf, in the output or the gradients.
    image = torch.zeros(1, 1, 4, 4, requires_grad=True)
    with torch.no_grad():
        image[0, 0, 0, 0] = float("inf")
    theta = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, 3.0]]], requires_grad=True)
    ours = stnkit.warp(image, theta, transform="affine")
    assert_fast_path_ran(ours, fused=True)
    theirs = torch_warp(image, theta, (4, 4), "zeros", False)
    assert torch.equal(ours, theirs)
    upstream = torch.full_like(ours, float("inf"))
    grads = torch.autograd.grad(ours, (image, theta), upstream)
    expected = torch.autograd.grad(theirs, (image, theta), upstream)
    assert torch.equal(grads[0], expected[0])
    assert torch.equal(grads[1].isnan(), expected[1].isnan())


@needs_kernel
def test_kernel_is_cached_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_loader_state: None
) -> None:
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path))
    assert kernel.kernel_available()
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(kernel, "_library", None)
    monkeypatch.setattr(kernel, "_load_attempted", False)
    assert kernel.kernel_available()
    assert list((tmp_path / "kernels").iterdir()) == built
    assert built[0].stat().st_mtime_ns == stamp


@needs_kernel
def test_damaged_cache_entry_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_loader_state: None
) -> None:
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path))
    compiler = shutil.which("c++") or shutil.which("g++")
    assert compiler is not None
    monkeypatch.setenv("CXX", compiler)
    target = kernel._library_path(compiler)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")
    assert kernel.kernel_available()
    assert target.read_bytes() != b"not a shared library"


def test_failed_build_warns_once_and_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_loader_state: None
) -> None:
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-stnkit")
    monkeypatch.delenv("STNKIT_KERNELS", raising=False)
    image = torch.randn(2, 1, 7, 7, dtype=torch.float64, requires_grad=True)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.2 * torch.randn(2, 2, 3, dtype=torch.float64)
    ).requires_grad_()
    with pytest.warns(RuntimeWarning, match="fused affine kernel is unavailable"):
        ours = stnkit.warp(image, theta, transform="affine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not kernel.kernel_available()
    torch.testing.assert_close(ours, torch_warp(image, theta, (7, 7), "zeros", False), rtol=0, atol=1e-12)


def test_unwritable_cache_warns_and_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_loader_state: None
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache directory cannot be made below a file")
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(blocker))
    monkeypatch.delenv("STNKIT_KERNELS", raising=False)
    with pytest.warns(RuntimeWarning, match="fused affine kernel is unavailable"):
        assert not kernel.kernel_available()


def test_kernels_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, fresh_loader_state: None) -> None:
    monkeypatch.setenv("STNKIT_KERNELS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not kernel.kernel_available()
    image, theta = torch.rand(2, 1, 5, 5), torch.eye(2, 3).expand(2, 2, 3)
    assert not fast._fused_kernel_applies(image, theta, "bilinear")


# ---- Extreme parameters: no undefined behaviour, torch's values ----------------------------------

# Theta patterns whose sampling points are huge, infinite or NaN. The warp's public boundary refuses
# non-finite parameters, but the kernel must still be safe with them (affine_warp_2d is called directly),
# and huge finite ones pass that check. In float32, 1e38 overflows to inf once unnormalised.
EXTREME_THETAS = {
    "huge_scale": lambda big: [[big, 0.0, 0.0], [0.0, big, 0.0]],
    "huge_shear": lambda big: [[1.0, big, 0.0], [-big, 1.0, 0.0]],
    "huge_translation": lambda big: [[1.0, 0.0, big], [0.0, 1.0, -big]],
    "huge_everywhere": lambda big: [[big, -big, big], [big, big, -big]],
    "one_row_huge": lambda big: [[big, 0.0, 0.3], [0.1, 0.9, 0.05]],
    "inf": lambda big: [[float("inf"), 0.0, 0.0], [0.0, 1.0, 0.0]],
    "minus_inf_translation": lambda big: [[1.0, 0.0, -float("inf")], [0.0, 1.0, 0.0]],
    "nan": lambda big: [[1.0, 0.0, float("nan")], [0.0, 1.0, 0.0]],
    "nan_everywhere": lambda big: [[float("nan")] * 3, [float("nan")] * 3],
}
HUGE = {torch.float32: 1e38, torch.float64: 1e300}


def unnormalized(grid: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    """torch's pixel coordinates for a grid's normalised ones (its CPU kernel's formula)."""
    if align_corners:
        return (grid + 1) * ((size - 1) / 2)
    return (grid + 1) * (size / 2) - 0.5


def torch_backward_is_safe(grid: torch.Tensor, image: torch.Tensor, padding_mode: str, ac: bool) -> bool:
    """torch 2.13's CPU grid sampler backward reads out of bounds (crashes) with NaN pixel coordinates
    under border or reflection padding, and with infinite ones under reflection."""
    xs = unnormalized(grid[..., 0], image.shape[3], ac)
    ys = unnormalized(grid[..., 1], image.shape[2], ac)
    coords = torch.stack((xs, ys))
    if padding_mode == "border":
        return not bool(coords.isnan().any())
    if padding_mode == "reflection":
        return bool(coords.isfinite().all())
    return True


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", list(EXTREME_THETAS))
@pytest.mark.parametrize(
    ("padding_mode", "align_corners"), list(itertools.product(PADDING_MODES, [False, True]))
)
def test_kernel_matches_torch_for_huge_infinite_and_nan_theta(
    dtype: torch.dtype, kind: str, padding_mode: str, align_corners: bool
) -> None:
    torch.manual_seed(4)
    image = torch.randn(2, 3, 9, 13, dtype=dtype, requires_grad=True)
    row = EXTREME_THETAS[kind](HUGE[dtype])
    theta = torch.tensor([row, row], dtype=dtype)
    theta[1] = theta[1] + 0.1 * torch.randn(2, 3, dtype=dtype)  # the second sample a little off
    theta.requires_grad_()
    assert fast._fused_kernel_applies(image, theta, "bilinear")
    ours = fast.affine_warp_2d(image, theta, 7, 11, "bilinear", padding_mode, align_corners)
    # The plain path with stnkit's grid, whose normalised coordinates are the kernel's: at 1e38 a point
    # at x = 0 stays at the centre or lands far outside depending on x's last bit, and F.affine_grid's
    # coordinates differ from those in the last bits.
    grid = fast.affine_grid_2d(theta, 7, 11, align_corners)
    theirs = F.grid_sample(image, grid, padding_mode=padding_mode, align_corners=align_corners)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance, equal_nan=True)
    upstream = torch.randn_like(ours)
    grad_image, grad_theta = torch.autograd.grad(ours, (image, theta), upstream)
    if torch_backward_is_safe(grid.detach(), image, padding_mode, align_corners):
        expected_image, expected_theta = torch.autograd.grad(theirs, (image, theta), upstream)
        torch.testing.assert_close(grad_image, expected_image, rtol=0, atol=tolerance, equal_nan=True)
        torch.testing.assert_close(
            grad_theta, expected_theta, rtol=1e-4, atol=100 * tolerance, equal_nan=True
        )
        return
    # Where torch cannot say, the kernel's gradients are still finite, and every sample point (clipped
    # into the image) spreads its upstream gradient over taps whose weights sum to one.
    assert bool(grad_image.isfinite().all()) and bool(grad_theta.isfinite().all())
    torch.testing.assert_close(grad_image.sum(dim=(2, 3)), upstream.sum(dim=(2, 3)), rtol=1e-4, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize(
    ("padding_mode", "align_corners"), list(itertools.product(PADDING_MODES, [False, True]))
)
def test_kernel_matches_torch_with_nan_and_inf_in_the_input(
    padding_mode: str, align_corners: bool, assert_fast_path_ran: Callable[..., None]
) -> None:
    torch.manual_seed(5)
    image = torch.randn(2, 2, 6, 7, dtype=torch.float64)
    image[0, 0, 2, 3], image[0, 1, 0, 0], image[1, 0, 5, 6] = float("nan"), float("inf"), -float("inf")
    image.requires_grad_()
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.4 * torch.randn(2, 2, 3, dtype=torch.float64)
    ).requires_grad_()
    ours = stnkit.warp(image, theta, padding_mode=padding_mode, align_corners=align_corners)
    assert_fast_path_ran(ours, fused=True)
    theirs = torch_warp(image, theta, (6, 7), padding_mode, align_corners)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12, equal_nan=True)
    upstream = torch.randn_like(ours)
    for got, expected in zip(
        torch.autograd.grad(ours, (image, theta), upstream),
        torch.autograd.grad(theirs, (image, theta), upstream),
    ):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_tap_offsets_fit_int32_for_every_input_the_kernel_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tap rows and columns are clamped to [-2, size + 1], so offsets reach (H + 3) * W + 2. The guard
    # used to bound (H + 2) * (W + 2), which a 1 x 600,000,000 input passes with offsets past 2^31.
    monkeypatch.setattr(kernel, "kernel_available", lambda: True)
    theta = torch.eye(2, 3)[None]
    for in_h, in_w in [(1, 600_000_000), (46_000, 46_000), (2**15, 2**16 - 10), (3, 5)]:
        image = torch.zeros(1).expand(1, 1, in_h, in_w)  # no memory behind it: only the shape matters
        if fast._fused_kernel_applies(image, theta, "bilinear"):
            assert (in_h + 3) * in_w + 2 < 2**31, (in_h, in_w)
    assert not fast._fused_kernel_applies(torch.zeros(1).expand(1, 1, 1, 600_000_000), theta, "bilinear")
    assert fast._fused_kernel_applies(torch.zeros(1).expand(1, 1, 3, 5), theta, "bilinear")


# ---- Determinism: every -march gives the same bits ------------------------------------------------

IS_X86_64 = os.uname().machine in ("x86_64", "AMD64") if hasattr(os, "uname") else False


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    """The kernel built for the x86-64 baseline (SSE2) and for this CPU (-march=native)."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None or not IS_X86_64 or sys.platform != "linux":
        pytest.skip("needs Linux on x86-64 and a C++ compiler")
    folder = tmp_path_factory.mktemp("builds")
    libraries = []
    for march in ("x86-64", "native"):
        target = folder / f"affine_bilinear-{march}.so"
        kernel.build_library(compiler, target, march=march)
        libraries.append(kernel.load_library(target))
    return libraries[0], libraries[1]


def run_kernel(library: object, dtype: torch.dtype, padding: int, align_corners: bool) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    image = torch.randn(5, 3, 23, 29, generator=generator, dtype=dtype)
    theta = torch.eye(2, 3, dtype=dtype) + 0.3 * torch.randn(5, 2, 3, generator=generator, dtype=dtype)
    theta[0] = torch.eye(2, 3, dtype=dtype)  # the identity: exact points
    theta[1, :, 2] += 3.0  # far outside
    output = kernel.affine_bilinear_forward(image, theta, 31, 27, padding, align_corners, library=library)  # type: ignore[arg-type]
    upstream = torch.randn(output.shape, generator=generator, dtype=dtype)
    grads = kernel.affine_bilinear_backward(
        upstream, image, theta, padding, align_corners, True, True, library=library
    )  # type: ignore[arg-type]
    return [output, *[g for g in grads if g is not None]]


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_values_are_bit_identical_for_every_march_and_thread_count(
    two_builds: tuple[object, object], threads: int
) -> None:
    baseline, native = two_builds
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for dtype, padding, align_corners in itertools.product(
            [torch.float32, torch.float64], [0, 1, 2], [False, True]
        ):
            for ours, theirs in zip(
                run_kernel(baseline, dtype, padding, align_corners),
                run_kernel(native, dtype, padding, align_corners),
            ):
                assert torch.equal(ours, theirs), (dtype, padding, align_corners)
    finally:
        torch.set_num_threads(previous)


# ---- Undefined behaviour: a sanitised build on the extreme cases ----------------------------------

UBSAN_SCRIPT = """
import itertools, sys, torch
from pathlib import Path
from stnkit.geometry import kernel
library = kernel.load_library(Path(sys.argv[1]))
for dtype, big in ((torch.float32, 1e38), (torch.float64, 1e300)):
    nan, inf = float("nan"), float("inf")
    for row in ([[big, 0, 0], [0, big, 0]], [[1, 0, nan], [0, 1, 0]], [[inf, 0, 0], [0, 1, -big]],
                [[big, -big, big], [big, big, -big]], [[1, big, 0], [-big, 1, 0]]):
        theta, image = torch.tensor([row], dtype=dtype), torch.randn(1, 3, 5, 6, dtype=dtype)
        for padding, align_corners in itertools.product([0, 1, 2], [False, True]):
            out = kernel.affine_bilinear_forward(image, theta, 4, 7, padding, align_corners, library=library)
            kernel.affine_bilinear_backward(
                torch.ones_like(out), image, theta, padding, align_corners, True, True, library=library
            )
print("clean")
"""


def test_kernel_has_no_undefined_behaviour_on_extreme_theta(tmp_path: Path) -> None:
    # Built with -fsanitize=undefined,float-cast-overflow and no recovery: the first out-of-range
    # float -> int (or double -> float) conversion aborts the child process. The kernel before this
    # test existed failed here (reflection at theta = 1e38: 4.3e37 converted to a 64-bit int).
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None or sys.platform != "linux":
        pytest.skip("needs Linux and a C++ compiler")
    target = tmp_path / "affine_bilinear-ubsan.so"
    flags = ["-O1", "-march=native", "-ffp-contract=off", "-fopenmp", "-std=c++17", "-shared", "-fPIC"]
    sanitize = ["-fsanitize=undefined,float-cast-overflow", "-fno-sanitize-recover=all"]
    build = subprocess.run(
        [compiler, *flags, *sanitize, str(kernel._SOURCE), "-o", str(target)], capture_output=True, text=True
    )
    if build.returncode != 0:
        pytest.skip(f"no UBSan runtime for {compiler}: {build.stderr.strip()[:200]}")
    run = subprocess.run(
        [sys.executable, "-c", UBSAN_SCRIPT, str(target)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr[-2000:]
    assert run.stdout.strip().endswith("clean")
