"""Portable numerics: pin the code paths of torch's CPU kernels that depend on the CPU model.

torch picks its CPU kernels by instruction set: ATen's vectorised loops use AVX-512 where the CPU has
it, oneDNN (convolutions) its widest JIT kernels, and MKL (matrix products) a code path per CPU
model. The paths sum in different orders, so the same training command drifts apart in the last bits
on two CPU models, and after an epoch or two the runs differ in whole test images.

*Portable* numerics caps ATen and oneDNN at AVX2 and asks MKL for its conditional numerical
reproducibility branch ``COMPATIBLE``, which leaves fewer CPU-dependent paths. What was measured
(docs/training.md): on an Intel Xeon it brings a run closer to one made natively on an AMD EPYC
(the same first-epoch training error), not to the same bits, and the fingerprint run of
``benchmarks/numerics_fingerprint.py`` under it differs from the first epoch between that Intel
Xeon and an AMD EPYC: it does not make two CPU models give identical numbers. The settings are
environment variables that torch reads once, at its first computation, so they must be chosen
before it. The default everywhere is ``"native"``.
"""

from __future__ import annotations

import os
import platform
from typing import Literal

import torch

__all__ = ["NUMERICS", "PORTABLE_ENVIRONMENT", "NumericsError", "numerics_in_use", "use_numerics"]

Numerics = Literal["portable", "native"]
NUMERICS: tuple[Numerics, ...] = ("portable", "native")

# The variables torch's libraries read when they first run: ATen (its vectorised kernels), oneDNN
# (convolutions) and MKL (BLAS; CBWR = conditional bitwise reproducibility).
PORTABLE_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
}

# ATen's one capability above AVX2 (torch.backends.cpu.get_cpu_capability()); in use after the cap
# was set, it means the process had computed before.
_WIDER_THAN_AVX2 = "AVX512"


class NumericsError(RuntimeError):
    """Portable numerics were asked for after torch had already chosen wider kernels."""


def use_numerics(numerics: Numerics) -> None:
    """Choose ``"portable"`` (kernels capped at AVX2, MKL's reproducible branch) or ``"native"`` numerics.

    Call it before the process's first tensor computation. ``"native"`` changes nothing: torch's
    choice for this CPU (the fastest), whose numbers may differ in the last bits from another CPU's.

    Raises:
        ValueError: ``numerics`` is neither ``"portable"`` nor ``"native"``.
        NumericsError: ``"portable"``, but torch has already computed with AVX-512 kernels here.
    """
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {', '.join(NUMERICS)}; got {numerics!r}")
    if numerics == "native":
        return
    before = {k: os.environ.get(k) for k in PORTABLE_ENVIRONMENT}
    os.environ.update(PORTABLE_ENVIRONMENT)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == _WIDER_THAN_AVX2:
        _restore_environment(before)  # refused: leave nothing behind for child processes
        raise NumericsError(
            f"portable numerics must be chosen before torch's first computation: this process already "
            f"uses {capability} kernels (start a fresh process, or set {_environment_line()})"
        )


def numerics_in_use() -> Numerics:
    """``"portable"`` if this x86-64 process runs with :data:`PORTABLE_ENVIRONMENT` and ATen within
    AVX2, else ``"native"`` (other architectures have no portable setting)."""
    pinned = all(os.environ.get(k) == v for k, v in PORTABLE_ENVIRONMENT.items())
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if pinned and x86 and torch.backends.cpu.get_cpu_capability() != _WIDER_THAN_AVX2:
        return "portable"
    return "native"


def _restore_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _environment_line() -> str:
    return " ".join(f"{k}={v}" for k, v in PORTABLE_ENVIRONMENT.items())
