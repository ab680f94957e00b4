"""A least-recently-used cache bounded by the bytes of the tensors it holds, not by its entry count.

Per-size constants (a thin-plate spline's (H * W, K) grid map, a warp's pixel coordinates) are worth
computing once, but ``functools.lru_cache(maxsize=32)`` bounds the number of entries, not their size: 32
thin-plate maps for 512 x 512 outputs hold 32 x 34 MB. :func:`byte_bounded_cache` drops the least
recently used entries once the tensors held pass ``max_bytes``, and never caches a result larger than that.

Example:
    >>> import torch
    >>> @byte_bounded_cache(max_bytes=2**20)
    ... def ramp(n: int) -> Tensor:
    ...     return torch.arange(n, dtype=torch.float64)
    >>> ramp(4) is ramp(4), ramp.cached_bytes
    (True, 32)
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, ParamSpec, TypeVar

import torch
from torch import Tensor
from torch.utils._python_dispatch import _disable_current_modes

__all__ = ["ByteBoundedCache", "byte_bounded_cache", "tensor_bytes"]

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def _real_tensors() -> Iterator[None]:
    """Compute real tensors even while ``torch.export`` (the ONNX exporter) traces with fake ones.

    A cached result outlives the trace: one made of its fake tensors would poison every later call in
    the process. The cached functions build constants from hashable arguments, so computing them outside
    the tracing modes is exact; the tracer then takes the real result as a constant. Dynamo (torch.compile,
    strict export) traces the Python itself, not through modes: there the function is traced as before.
    """
    if torch.compiler.is_dynamo_compiling():
        yield
        return
    with _disable_current_modes():
        yield


def tensor_bytes(value: object) -> int:
    """Bytes of the tensors in ``value``: a tensor, or a tuple / list (NamedTuples too) holding some.

    Anything else (ints, strings) counts 0.
    """
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(item) for item in value)
    return 0


class ByteBoundedCache(Generic[P, R]):
    """``function`` with its results cached by argument, least recently used first out past ``max_bytes``.

    Arguments must be hashable (ints, tuples, dtypes and devices are). Results are shared between
    callers: treat them as read-only, as with ``functools.lru_cache``.
    """

    def __init__(self, function: Callable[P, R], max_bytes: int) -> None:
        self._function = function
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[R, int]] = OrderedDict()  # key -> (result, its bytes)
        self._bytes = 0
        self._lock = threading.Lock()  # DataLoader threads and the training loop may share a cache
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = (args, tuple(sorted(kwargs.items())))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        with _real_tensors():
            result = self._function(*args, **kwargs)  # outside the lock: it may take a while
        self._store(key, result, tensor_bytes(result))
        return result

    def _store(self, key: Hashable, result: R, size: int) -> None:
        with self._lock:
            if size > self.max_bytes or key in self._entries:
                return
            self._entries[key] = (result, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted_size) = self._entries.popitem(last=False)
                self._bytes -= evicted_size

    @property
    def cached_bytes(self) -> int:
        """Bytes of the tensors held now (at most ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def cache_clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def byte_bounded_cache(max_bytes: int) -> Callable[[Callable[P, R]], ByteBoundedCache[P, R]]:
    """Decorator: cache a function's tensor results, holding at most ``max_bytes`` of them.

    Use it in place of ``functools.lru_cache`` for per-size constants; see the module docstring.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")

    def decorate(function: Callable[P, R]) -> ByteBoundedCache[P, R]:
        return ByteBoundedCache(function, max_bytes)

    return decorate
