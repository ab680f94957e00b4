"""The paper's distorted-MNIST classifiers: FCN, CNN, ST-FCN, ST-CNN and their variants.

Jaderberg et al. 2015, section 4.1 and appendix A. What the paper pins down and what is our choice
(see docs/training.md, "What the paper does not pin down"):

- CNN: two conv + max-pool stages and a classifier. We use 5x5 conv with 32 and 64 filters, 2x2
  max-pool, then one hidden layer of 128 and softmax. FCN: hidden ReLU layers and softmax.
- ST-CNN: a CNN localisation net (two 5x5 conv layers of 20 filters with max-pool, a 50-unit
  layer) working on the input downsampled by 2; ST-FCN: an MLP localisation net (32-unit layers).
- Affine (6 params), projective (8) and thin-plate-spline (16 control points) transformers.
- The input transformer outputs at most 28x28 (``crop_to``, our choice): on 42x42 RTS it learns
  to crop and zoom on the digit and the classifier runs on MNIST's native size. ``crop_to=None``
  keeps the input size as in the paper.
- Baselines (``cnn``, ``fcn``) get the parameter budget of their ST counterpart: the hidden width
  is solved so the parameter counts match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from torch import nn

from stnkit.models.parts import (
    Classifier,
    ParallelSpatialTransformer,
    conv_stage,
    count_parameters,
    feature_shape,
    mlp,
)
from stnkit.models.registry import register_model
from stnkit.nn import LocalizationCNN, LocalizationMLP, SpatialTransformer

__all__ = ["build_cnn", "build_fcn", "cnn_localization", "fcn_localization"]

PAPER_TRANSFORMS = ("affine", "projective", "tps")
Size = tuple[int, int]


def _size(image_size: int | Sequence[int]) -> Size:
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = image_size
    return (int(h), int(w))


def _crop_size(image: Size, crop_to: int | None) -> Size | None:
    """Output size of an input transformer: each side at most ``crop_to`` (None: the input's)."""
    if crop_to is None or max(image) <= crop_to:
        return None
    return (min(image[0], crop_to), min(image[1], crop_to))


def cnn_localization(
    in_channels: int,
    *,
    channels: Sequence[int] = (20, 20),
    out_features: int = 50,
    downsample: int = 2,
) -> nn.Module:
    """The ST-CNN localisation net: two 5x5 conv + max-pool stages and a 50-unit layer."""
    return LocalizationCNN(
        in_channels=in_channels,
        channels=tuple(channels),
        kernel_size=5,
        out_features=out_features,
        downsample=downsample,
    )


def fcn_localization(in_features: int, *, hidden: Sequence[int] = (32, 32)) -> nn.Module:
    """The ST-FCN localisation net: an MLP of 32-unit layers (the regression layer is the third)."""
    return LocalizationMLP(in_features=in_features, hidden=tuple(hidden))


def _make_stn(
    make_localization: Callable[[], nn.Module],
    transform: str,
    num_heads: int,
    out_size: Size | None = None,
    *,
    shared_localization: bool = True,
) -> nn.Module:
    """One transformer, or ``num_heads`` in parallel on one localisation net or on one each."""
    if num_heads == 1:
        return SpatialTransformer(localization=make_localization(), transform=transform, out_size=out_size)
    localization = (
        make_localization() if shared_localization else [make_localization() for _ in range(num_heads)]
    )
    return ParallelSpatialTransformer(
        localization=localization, num_heads=num_heads, transform=transform, out_size=out_size
    )


def build_cnn(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int | Sequence[int] = (42, 42),
    channels: Sequence[int] = (32, 64),
    kernel_sizes: Sequence[int] = (5, 5),
    hidden: Sequence[int] = (128,),
    dropout: float = 0.0,
    norm: bool = False,
    transform: str | None = None,
    num_heads: int = 1,
    shared_localization: bool = True,
    stn_stage: int = 0,
    loc_channels: Sequence[int] = (20, 20),
    loc_features: int = 50,
    loc_downsample: int = 2,
    crop_to: int | None = 28,
) -> Classifier:
    """A CNN of conv + max-pool stages and an MLP head, with an optional spatial transformer.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        image_size: input (H, W).
        channels: output channels of each conv stage.
        kernel_sizes: kernel size of each conv stage.
        hidden: hidden widths of the head.
        dropout: dropout after each hidden layer.
        norm: BatchNorm after each conv (not in the paper; faster convergence).
        transform: None for the baseline, else the transformer's transform name.
        num_heads: parallel transformers (outputs stacked on channels).
        shared_localization: the parallel transformers share one localisation net (else one each).
        stn_stage: 0 puts the transformer on the input; s > 0 puts it on the feature maps after
            conv stage s (a transformer inside the network).
        loc_channels: conv channels of the localisation net.
        loc_features: width of its fully connected layer.
        loc_downsample: the localisation net sees its input downsampled by this factor.
        crop_to: the input transformer outputs at most ``crop_to`` pixels per side (MNIST's
            native 28): on 42x42 RTS it learns to crop the digit to 28x28, and the classifier
            costs 2.6x less. At init it is the identity map, sampling the whole input at that
            resolution. None keeps the input size (the paper's setting).
    """
    if len(channels) != len(kernel_sizes):
        raise ValueError("channels and kernel_sizes need the same length")
    if not 0 <= stn_stage <= len(channels):
        raise ValueError(f"stn_stage must be in [0, {len(channels)}], got {stn_stage}")
    h, w = _size(image_size)
    input_shape = (in_channels, h, w)
    shape: tuple[int, ...] = input_shape
    stn: nn.Module | None = None
    layers: list[nn.Module] = []
    for stage, (c, k) in enumerate(zip(channels, kernel_sizes)):
        if transform is not None and stage == stn_stage:
            make_loc = partial(
                cnn_localization,
                shape[0],
                channels=loc_channels,
                out_features=loc_features,
                downsample=loc_downsample,
            )
            crop = _crop_size((h, w), crop_to) if stage == 0 else None
            module = _make_stn(make_loc, transform, num_heads, crop, shared_localization=shared_localization)
            if stage == 0:
                stn = module
            else:
                layers.append(module)
            shape = feature_shape(module, shape)
        block = conv_stage(shape[0], c, k, norm=norm)
        layers.append(block)
        shape = feature_shape(block, shape)
    if transform is not None and stn_stage == len(channels):
        make_last_loc = partial(
            cnn_localization, shape[0], channels=loc_channels, out_features=loc_features, downsample=1
        )
        layers.append(_make_stn(make_last_loc, transform, num_heads, shared_localization=shared_localization))
        shape = feature_shape(layers[-1], shape)
    features = nn.Sequential(*layers)
    flat = int(shape[0] * shape[1] * shape[2])
    head = mlp(flat, hidden, num_classes, dropout=dropout)
    return Classifier(features=features, head=head, stn=stn, input_shape=input_shape)


def build_fcn(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int | Sequence[int] = (42, 42),
    hidden: Sequence[int] = (128, 128),
    dropout: float = 0.0,
    transform: str | None = None,
    num_heads: int = 1,
    shared_localization: bool = True,
    loc_hidden: Sequence[int] = (32, 32),
    crop_to: int | None = 28,
) -> Classifier:
    """A fully connected classifier with an optional spatial transformer on the input.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        image_size: input (H, W).
        hidden: hidden widths.
        dropout: dropout after each hidden layer.
        transform: None for the baseline, else the transformer's transform name.
        num_heads: parallel transformers (outputs stacked on channels).
        shared_localization: the parallel transformers share one localisation net (else one each).
        loc_hidden: hidden widths of the localisation MLP.
        crop_to: the transformer outputs at most this many pixels per side (see
            :func:`build_cnn`); None keeps the input size.
    """
    h, w = _size(image_size)
    input_shape = (in_channels, h, w)
    stn = None
    channels = in_channels
    if transform is not None:
        crop = _crop_size((h, w), crop_to)

        make_loc = partial(fcn_localization, in_channels * h * w, hidden=loc_hidden)
        stn = _make_stn(make_loc, transform, num_heads, crop, shared_localization=shared_localization)
        channels = in_channels * num_heads
        h, w = crop or (h, w)
    features = mlp(channels * h * w, hidden, dropout=dropout)
    head = nn.Linear(hidden[-1] if hidden else channels * h * w, num_classes)
    return Classifier(features=features, head=head, stn=stn, input_shape=input_shape)


def _solve_width(count: Callable[[int], int], target: int, hi: int = 8192) -> int:
    """Smallest width whose parameter count reaches ``target`` (count grows with the width)."""
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _budget_kwargs(kwargs: dict[str, Any], drop: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in drop}


# --- the registry -------------------------------------------------------------------------------


@register_model("cnn")
def cnn(*, match_budget: bool = True, **kwargs: Any) -> Classifier:
    """Plain CNN baseline; its head is widened to the parameter count of ``st-cnn-affine``."""
    if not match_budget or "hidden" in kwargs:
        return build_cnn(**kwargs)
    target = count_parameters(build_cnn(transform="affine", **kwargs))
    width = _solve_width(lambda w: count_parameters(build_cnn(hidden=(w,), **kwargs)), target)
    return build_cnn(hidden=(width,), **kwargs)


@register_model("fcn")
def fcn(*, match_budget: bool = True, **kwargs: Any) -> Classifier:
    """Plain FCN baseline; its hidden layers are widened to the count of ``st-fcn-affine``."""
    if not match_budget or "hidden" in kwargs:
        return build_fcn(**kwargs)
    target = count_parameters(build_fcn(transform="affine", **kwargs))
    rest = _budget_kwargs(kwargs, ("loc_hidden",))
    width = _solve_width(lambda w: count_parameters(build_fcn(hidden=(w, w), **rest)), target)
    return build_fcn(hidden=(width, width), **rest)


def _register_paper_models() -> None:
    for name in PAPER_TRANSFORMS:

        def st_cnn(*, _t: str = name, **kwargs: Any) -> Classifier:
            return build_cnn(transform=_t, **kwargs)

        def st_fcn(*, _t: str = name, **kwargs: Any) -> Classifier:
            return build_fcn(transform=_t, **kwargs)

        st_cnn.__doc__ = f"ST-CNN with a {name} transformer on the input."
        st_fcn.__doc__ = f"ST-FCN with a {name} transformer on the input."
        register_model(f"st-cnn-{name}")(st_cnn)
        register_model(f"st-fcn-{name}")(st_fcn)

        # MNIST addition: two transformers in parallel on one localisation net (section 4.1).
        def two_st_cnn(*, _t: str = name, **kwargs: Any) -> Classifier:
            kwargs.setdefault("num_heads", 2)
            return build_cnn(transform=_t, **kwargs)

        def two_st_fcn(*, _t: str = name, **kwargs: Any) -> Classifier:
            kwargs.setdefault("num_heads", 2)
            return build_fcn(transform=_t, **kwargs)

        two_st_cnn.__doc__ = (
            f"Two parallel {name} transformers on one localisation net, then a CNN (MNIST addition)."
        )
        two_st_fcn.__doc__ = (
            f"Two parallel {name} transformers on one localisation net, then an FCN (MNIST addition)."
        )
        register_model(f"2xst-cnn-{name}")(two_st_cnn)
        register_model(f"2xst-fcn-{name}")(two_st_fcn)


_register_paper_models()


@register_model("st-cnn-inner-affine")
def st_cnn_inner_affine(**kwargs: Any) -> Classifier:
    """CNN with an affine transformer on the feature maps after the first conv stage."""
    kwargs.setdefault("stn_stage", 1)
    kwargs.setdefault("loc_downsample", 1)
    return build_cnn(transform="affine", **kwargs)
