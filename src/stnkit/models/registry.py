"""A registry of small model builders behind ``create_model(name)`` (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "ModelArgumentError",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_entrypoint",
    "register_model",
]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}


class ModelArgumentError(ValueError):
    """A builder was given arguments it does not take, or values it cannot build from."""


class UnknownModelError(KeyError):
    """No model is registered under the name; the message lists the known names.

    A ``KeyError`` (a failed look-up), with the plain message as ``str`` (``KeyError`` quotes it).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register_model(name: str) -> Callable[[B], B]:
    """Register a builder under ``name`` (a decorator).

    Example:
        >>> @register_model("tiny-linear-demo")
        ... def tiny_linear_demo(*, num_classes=10, **_):
        ...     return nn.Linear(4, num_classes)
        >>> "tiny-linear-demo" in list_models()
        True
    """

    def decorate(builder: B) -> B:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` keeps names containing it."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern in n] if pattern else names


def model_entrypoint(name: str) -> Builder:
    """The builder registered as ``name``.

    Raises:
        UnknownModelError: no such model; the message lists the known names.
        ModelArgumentError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise ModelArgumentError(f"a model name is a string, got {type(name).__name__} {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model, optionally with shipped pretrained weights.

    Args:
        name: a name from :func:`list_models`; with ``pretrained``, a name from
            :func:`stnkit.models.list_pretrained` (``MODEL.TAG``) or a model with one such file.
        pretrained: load the shipped weights (SHA-256 checked, safetensors, never pickle) and
            return the model in eval mode; see :mod:`stnkit.models.pretrained`.
        **kwargs: builder arguments; every builder takes ``in_channels``, ``num_classes`` and
            ``image_size`` (H, W) so a model fits any dataset of the data module. With
            ``pretrained`` they must equal the weights' own (which are used by default).

    Raises:
        UnknownModelError: no such model.
        ModelArgumentError: an argument the builder does not take, or a value it cannot use
            (e.g. ``hidden="abc"``); the message names the model and the arguments.
        PretrainedWeightsError: with ``pretrained``, unknown weights or a file that is missing,
            altered or does not fit.

    Example:
        >>> from stnkit.models import create_model
        >>> create_model("cnn", in_channels=1, num_classes=10, image_size=(28, 28)).training
        True
        >>> create_model("st-cnn-affine.rts", pretrained=True).training  # doctest: +SKIP
        False
    """
    if pretrained:
        from stnkit.models.pretrained import create_pretrained  # it builds through this function

        return create_pretrained(name, **kwargs)
    builder = model_entrypoint(name)
    try:
        return builder(**kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        # Builders pass their arguments on to layers, whose errors do not name the model (torch's
        # layers raise RuntimeError for sizes they cannot make, e.g. a negative width).
        given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        raise ModelArgumentError(f"cannot build model {name!r} from ({given}): {err}") from err
