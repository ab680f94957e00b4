"""Argument checks shared by the geometry functions.

Every public function validates its tensors here, so that a wrong shape, dtype or value fails early with a
message that names the argument, what was expected and what came, instead of deep inside torch.
Values (finiteness) are checked on CPU tensors only: see :func:`check_finite`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "NonFiniteError",
    "check_choice",
    "check_finite",
    "check_flag",
    "check_floating",
    "check_same_batch",
    "check_shape",
    "check_tensor",
    "is_tracing",
    "normalize_size",
]


class NonFiniteError(ValueError):
    """Transform parameters or a grid hold NaN or infinity (in training: the run has diverged)."""


def is_tracing() -> bool:
    """True while torch.compile, torch.jit or the ONNX exporter traces the code.

    Value-dependent checks (finiteness) are skipped then: they would force a graph break or a host sync.
    """
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.compiler.is_compiling():
        return True
    return bool(torch.onnx.is_in_onnx_export())


def check_tensor(value: object, name: str) -> Tensor:
    """Raise TypeError unless ``value`` is a tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(value: Tensor, name: str) -> None:
    """Raise TypeError unless ``value`` has a floating-point dtype."""
    if not value.is_floating_point():
        hint = ""
        if value.dtype == torch.uint8:
            hint = " (convert images first, e.g. images.float() / 255)"
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}{hint}")


def check_shape(value: Tensor, name: str, expected: Sequence[int | None], description: str) -> None:
    """Raise ValueError unless ``value.shape`` matches ``expected`` (None matches any size).

    Args:
        value: the tensor to check.
        name: argument name used in the message.
        expected: the expected shape; ``None`` entries match any size.
        description: the expected shape in words, e.g. ``"(N, 2, 3)"``.
    """
    shape = tuple(value.shape)
    ok = len(shape) == len(expected) and all(
        want is None or want == got for want, got in zip(expected, shape)
    )
    if not ok:
        raise ValueError(f"{name} must have shape {description}, got {list(shape)}")


def check_finite(value: Tensor, name: str) -> None:
    """Raise :class:`NonFiniteError` if a CPU tensor ``value`` holds NaN or infinity.

    Only CPU tensors are checked. On any other device (CUDA, MPS, meta) reading the answer back would
    synchronise the host with the device on every call, so values there are not checked: a diverged run
    is for the training engine to notice (it watches the loss). Skipped while tracing too.
    """
    if value.device.type != "cpu" or is_tracing() or value.numel() == 0:
        return
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise NonFiniteError(f"{name} must be finite, got {bad} non-finite value(s) (NaN or inf)")


def check_same_batch(first: Tensor, first_name: str, second: Tensor, second_name: str) -> None:
    """Raise ValueError unless both tensors have the same leading (batch) size."""
    if first.shape[0] != second.shape[0]:
        raise ValueError(
            f"batch sizes differ: {first_name} has {first.shape[0]}, {second_name} has {second.shape[0]}"
        )


def _as_positive_int(value: object) -> int | None:
    """``value`` as a Python int if it is an integer >= 1 (numpy and torch integers too, not bools)."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None
    return number if number >= 1 else None


def check_positive_int(value: object, name: str) -> int:
    """Raise ValueError unless ``value`` is an integer >= 1 (a bool is not one); return it as an int."""
    number = _as_positive_int(value)
    if number is None:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return number


def check_widths(values: object, name: str) -> tuple[int, ...]:
    """Raise ValueError unless ``values`` is an iterable (not a string) of integers >= 1, e.g. layer widths."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}")
    widths = [_as_positive_int(v) for v in values]
    if any(w is None for w in widths):
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}")
    return tuple(w for w in widths if w is not None)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_flag(value: object, name: str) -> bool:
    """Return ``value`` as a Python bool; raise TypeError unless it is a bool or a ``numpy.bool_``.

    Ints, strings, ``None`` and tensors are refused rather than read by truthiness: ``"no"`` or a
    ``torch.tensor(False)`` from a config would otherwise pick a convention silently (or fail deep inside).
    """
    if isinstance(value, bool):  # the only cost on the valid path
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    shown = short_repr(value)
    raise TypeError(f"{name} must be a bool (True or False), got {shown} ({type(value).__name__})")


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message: one line even for a multi-line repr (a big tensor), cut
    to ``limit`` characters."""
    shown = " ".join(repr(value).split())
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def normalize_size(size: object, name: str, spatial_dims: int | None = None) -> tuple[int, ...]:
    """Turn a size argument into a tuple of positive ints.

    Args:
        size: a ``torch.Size``, tuple or list of ints.
        name: argument name used in the message.
        spatial_dims: if given, the number of entries required.

    Returns:
        The size as a tuple of ints.
    """
    if isinstance(size, int):
        size = (size,) * (spatial_dims or 1)
    if not isinstance(size, Sequence) or not all(isinstance(s, int) for s in size):
        raise TypeError(f"{name} must be a sequence of ints, got {size!r}")
    result = tuple(int(s) for s in size)
    if spatial_dims is not None and len(result) != spatial_dims:
        raise ValueError(f"{name} must have {spatial_dims} entries, got {len(result)}: {result}")
    if any(s <= 0 for s in result):
        raise ValueError(f"{name} must be positive, got {result}")
    return result
