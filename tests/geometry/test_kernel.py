"""The fused C++ affine kernel: agrees with torch and the reference sampler, builds, caches, falls back."""

from __future__ import annotations

import itertools
import os
import shutil
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
    theirs = torch_warp(image, theta, (11, 7), padding_mode, align_corners)
    assert_same_outputs_and_gradients(ours, theirs, (image, theta))


@needs_kernel
@pytest.mark.parametrize(
    ("padding_mode", "align_corners"), list(itertools.product(PADDING_MODES, [False, True]))
)
@pytest.mark.parametrize("channels", [1, 3])
def test_kernel_matches_reference_in_float32_on_a_parallel_batch(
    padding_mode: str, align_corners: bool, channels: int
) -> None:
    # 40 x C x 32 x 32 outputs: enough work for the kernel's OpenMP loop to split the batch.
    torch.manual_seed(1)
    image = torch.rand(40, channels, 32, 32, requires_grad=True)
    theta = (torch.eye(2, 3) + 0.2 * torch.randn(40, 2, 3)).requires_grad_()
    kwargs = {"transform": "affine", "padding_mode": padding_mode, "align_corners": align_corners}
    ours = stnkit.warp(image, theta, **kwargs)  # type: ignore[arg-type]
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
def test_kernel_returns_just_the_gradients_asked_for(need_input: bool, need_theta: bool) -> None:
    image = torch.randn(3, 2, 6, 6, dtype=torch.float64, requires_grad=need_input)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.2 * torch.randn(3, 2, 3, dtype=torch.float64)
    ).requires_grad_(need_theta)
    ours = stnkit.warp(image, theta, transform="affine")
    theirs = torch_warp(image, theta, (6, 6), "zeros", False)
    wanted = [t for t in (image, theta) if t.requires_grad]
    for got, expected in zip(
        torch.autograd.grad(ours.sum(), wanted), torch.autograd.grad(theirs.sum(), wanted)
    ):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@needs_kernel
def test_kernel_gradcheck() -> None:
    image = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(2, 2, 3, dtype=torch.float64)
    ).requires_grad_()
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
def test_kernel_skips_non_finite_values_that_torch_skips() -> None:
    # Taps outside the image are never read: an inf stored where an outside tap would point (offset 0)
    # must not turn into NaN through 0 * inf, in the output or the gradients.
    image = torch.zeros(1, 1, 4, 4, requires_grad=True)
    with torch.no_grad():
        image[0, 0, 0, 0] = float("inf")
    theta = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, 3.0]]], requires_grad=True)
    ours = stnkit.warp(image, theta, transform="affine")
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
