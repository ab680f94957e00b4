"""The fused CPU kernel for 2-D affine bilinear warps: build on first use, load, call.

``kernels/affine_bilinear.cpp`` computes each sampling point from ``theta`` on the fly (no grid, nor
any other array the size of the output, in memory) and returns ``d loss / d theta`` without writing
``d loss / d grid``. It is plain C++ with a C
interface, so it compiles in a few seconds with the system compiler (``$CXX``, else ``c++``) and needs
no PyTorch headers; parallel loops run on torch's own OpenMP thread pool. The shared library is cached
under ``$STNKIT_CACHE_DIR/kernels`` (default ``~/.cache/stnkit/kernels``), keyed by the source, the
compiler, the flags and the CPU's features, and written atomically, so concurrent processes and stale
builds are safe.

Where the kernel cannot be had (no compiler, a failed build) :mod:`stnkit` warns once and uses the
torch-op path of :mod:`stnkit.geometry.fast`, which agrees to rounding; ``STNKIT_KERNELS=0`` chooses
that path silently.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "affine_bilinear_backward",
    "affine_bilinear_forward",
    "build_library",
    "kernel_available",
    "load_library",
]

_SOURCE = Path(__file__).parent / "kernels" / "affine_bilinear.cpp"
_ABI_VERSION = 5
# -march=native lets the compiler turn the tap reads into SIMD gathers (the cache key includes the CPU's
# features, so a home directory shared between machines gets one build per kind of CPU). -fopenmp: the
# library then shares torch's own OpenMP runtime (already loaded, same soname) and so its thread pool
# and torch.set_num_threads(). No -ffast-math, -ffp-contract=off (no fused multiply-adds) and no
# OpenMP reductions in the source: the warp's values then follow from IEEE rules alone, bit for bit the
# same for every -march (tests/geometry/test_kernel.py builds two and compares).
_MARCH = "native"
_FLAGS = (
    "-O3",
    "-ffp-contract=off",
    "-fopenmp",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-std=c++17",
    "-shared",
    "-fPIC",
)
_COMPILE_TIMEOUT_S = 300

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_load_attempted = False

_POINTER = ctypes.c_void_p
_INT64 = ctypes.c_int64
_INT = ctypes.c_int
_FORWARD_ARGS = [_POINTER] * 3 + [_INT64] * 6 + [_INT, _INT]
_BACKWARD_ARGS = [_POINTER] * 5 + [_INT64] * 6 + [_INT, _INT]


def _cache_dir() -> Path:
    configured = os.environ.get("STNKIT_CACHE_DIR")
    if configured:
        return Path(configured) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "stnkit" / "kernels"


def _compiler_identity(compiler: str) -> str:
    """The compiler's ``--version`` banner, so that a changed compiler rebuilds."""
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return result.stdout


def _cpu_identity() -> str:
    """The CPU's feature flags (Linux) or processor name: what -march=native compiles for."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _flags(march: str) -> tuple[str, ...]:
    return (f"-march={march}", *_FLAGS)


def _library_path(compiler: str) -> Path:
    """Where the library built from this source, compiler, flags and CPU lives in the cache."""
    flags = " ".join(_flags(_MARCH)).encode()
    identity = (_SOURCE.read_bytes(), _compiler_identity(compiler).encode(), flags)
    key = hashlib.sha256(b"\0".join((*identity, _cpu_identity().encode()))).hexdigest()[:16]
    return _cache_dir() / f"affine_bilinear-{key}.so"


def build_library(compiler: str, target: Path, *, march: str = _MARCH) -> None:
    """Compile the kernel for ``-march={march}`` to ``target``, atomically (no half-written library).

    :func:`kernel_available` builds the library it uses itself; this is for comparing builds.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        result = subprocess.run(
            [compiler, *_flags(march), str(_SOURCE), "-o", partial],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} exited with {result.returncode}:\n{result.stderr.strip()}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _open_library(compiler: str) -> ctypes.CDLL:
    """Load the cached library, building it first where it is missing, rebuilding it where it is unusable."""
    target = _library_path(compiler)
    if not target.exists():
        build_library(compiler, target)
    try:
        return load_library(target)
    except OSError:
        # A damaged cache entry (a disk filled up, a file copied from elsewhere): build it afresh once.
        target.unlink(missing_ok=True)
        build_library(compiler, target)
        return load_library(target)


def load_library(path: Path) -> ctypes.CDLL:
    """Load a built kernel library and declare its functions' arguments."""
    library = ctypes.CDLL(str(path))
    if library.stnkit_affine_bilinear_abi() != _ABI_VERSION:
        raise RuntimeError(f"{path} has an unexpected ABI version")
    for suffix in ("f32", "f64"):
        getattr(library, f"stnkit_affine_bilinear_forward_{suffix}").argtypes = _FORWARD_ARGS
        getattr(library, f"stnkit_affine_bilinear_backward_{suffix}").argtypes = _BACKWARD_ARGS
    return library


def _load() -> ctypes.CDLL | None:
    """Build and load the library once per process; None (after one warning) where that fails."""
    global _library, _load_attempted
    if _load_attempted:  # every warp asks: answer without the lock once settled
        return _library
    with _lock:
        if not _load_attempted:
            _library = _try_to_open()
            _load_attempted = True  # set last: a reader that sees it also sees _library
        return _library


def _try_to_open() -> ctypes.CDLL | None:
    if os.environ.get("STNKIT_KERNELS", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    try:
        if compiler is None:
            raise RuntimeError("no C++ compiler found (set $CXX or install g++/clang++)")
        library = _open_library(compiler)
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"stnkit: the fused affine kernel is unavailable ({error}); using the torch-op path, "
            "which gives the same results more slowly. Set STNKIT_KERNELS=0 to silence this.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return library


def kernel_available() -> bool:
    """Whether the fused kernel is built and loaded (building it on the first call)."""
    return _load() is not None


def _pointer(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _suffix(dtype: torch.dtype) -> str:
    return {torch.float32: "f32", torch.float64: "f64"}[dtype]


def affine_bilinear_forward(
    input: Tensor,
    theta: Tensor,
    height: int,
    width: int,
    padding_code: int,
    align_corners: bool,
    library: ctypes.CDLL | None = None,
) -> Tensor:
    """Output (N, C, height, width) of warping ``input`` (N, C, H_in, W_in) with ``theta`` (N, 2, 3).

    Both tensors contiguous, on the CPU, of one dtype (float32 or float64). ``library``: a library from
    :func:`load_library`, else the one :func:`kernel_available` loaded.
    """
    library = library or _load()
    assert library is not None
    batch, channels, in_h, in_w = input.shape
    output = torch.empty((batch, channels, height, width), dtype=input.dtype)
    function = getattr(library, f"stnkit_affine_bilinear_forward_{_suffix(input.dtype)}")
    pointers = [_pointer(t) for t in (input, theta, output)]
    function(*pointers, batch, channels, in_h, in_w, height, width, padding_code, int(align_corners))
    return output


def affine_bilinear_backward(
    grad_output: Tensor,
    input: Tensor,
    theta: Tensor,
    padding_code: int,
    align_corners: bool,
    need_input: bool,
    need_theta: bool,
    library: ctypes.CDLL | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients ``(d input, d theta)`` of :func:`affine_bilinear_forward`; None where not needed.

    ``grad_output`` (N, C, H, W) contiguous; the other arguments as given to the forward.
    """
    library = library or _load()
    assert library is not None
    batch, channels, in_h, in_w = input.shape
    height, width = grad_output.shape[2:]
    grad_input = torch.empty_like(input) if need_input else None  # zero-filled by the kernel
    grad_theta = torch.empty_like(theta) if need_theta else None
    function = getattr(library, f"stnkit_affine_bilinear_backward_{_suffix(input.dtype)}")
    tensors = (grad_output, input, theta, grad_input, grad_theta)
    function(
        *[_pointer(t) for t in tensors],
        batch,
        channels,
        in_h,
        in_w,
        height,
        width,
        padding_code,
        int(align_corners),
    )
    return grad_input, grad_theta
