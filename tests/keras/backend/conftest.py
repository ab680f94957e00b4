"""Helpers for the Keras tests, which run once per backend (see tests/keras/conftest.py).

The torch side is the reference: the same NumPy arrays go through ``stnkit.keras`` on the backend under
test and through ``stnkit`` in torch. (The test process may import torch; ``stnkit.keras`` does not,
see test_imports.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="keras is not installed: pip install 'stnkit[keras]'")
torch = pytest.importorskip("torch")

BACKEND = keras.backend.backend()


@pytest.fixture
def float64() -> Iterator[None]:
    """Allow float64 arrays on the backend (JAX needs x64 switched on) for the duration of a test."""
    if BACKEND == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def _backend_gradients(fn: Callable[..., Any], arrays: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors)
    elif BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(arrays))))(*map(jnp.asarray, arrays))
    elif BACKEND == "torch":
        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        value = fn(*tensors)
        value.backward()
        grads = [t.grad for t in tensors]
    else:  # pragma: no cover
        pytest.skip(f"no gradient helper for the {BACKEND} backend")
    assert all(g is not None for g in grads), "a gradient did not reach its input"
    return float(keras.ops.convert_to_numpy(value)), [
        np.asarray(keras.ops.convert_to_numpy(g)) for g in grads
    ]


@pytest.fixture
def backend_gradients() -> Callable[..., tuple[float, list[np.ndarray]]]:
    """``(fn, arrays) -> (fn(*arrays), [d fn / d array])`` on the backend under test, via its autodiff."""
    return _backend_gradients


def _torch_gradients(fn: Callable[..., Any], arrays: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    value = fn(*tensors)
    value.backward()
    return value.item(), [t.grad.numpy() for t in tensors]


@pytest.fixture
def torch_gradients() -> Callable[..., tuple[float, list[np.ndarray]]]:
    """The same as ``backend_gradients`` with torch's autograd (for the reference)."""
    return _torch_gradients


def to_nchw(images: Any) -> Any:
    return images.permute(0, 3, 1, 2)


def to_nhwc(images: Any) -> Any:
    return images.permute(0, 2, 3, 1)


@pytest.fixture
def torch_warp() -> Callable[..., Any]:
    """``stnkit.warp`` on channels-last torch tensors, with the Keras side's argument names."""
    import stnkit

    def run(images: Any, params: Any, *, output_size: Any = None, **kwargs: Any) -> Any:
        return to_nhwc(stnkit.warp(to_nchw(images), params, out_size=output_size, **kwargs))

    return run


@pytest.fixture
def keras_warp() -> Callable[..., Any]:
    from stnkit.keras import warp

    return warp


def random_params(rng: np.random.Generator, transform: str, batch: int, scale: float = 0.25) -> np.ndarray:
    """Identity plus noise: a moderate random warp of each transform (homographies kept tame)."""
    from stnkit.keras import identity_params

    identity = identity_params(transform)
    noise = rng.normal(0.0, scale, (batch, identity.size))
    if transform == "projective":
        noise[:, 6:] *= 0.3  # keep w = p6 x + p7 y + 1 away from 0 over the image
    return identity[None] + noise


@pytest.fixture
def make_params() -> Callable[..., np.ndarray]:
    return random_params
