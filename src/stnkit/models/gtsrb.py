"""Traffic-sign classifiers with spatial transformers, in the spirit of the GTSRB record holders.

The networks that hold the GTSRB records (Arcos-Garcia et al. 2018, 99.71%; the Moodstocks
``gtsrb.torch`` ST-CNN, 99.61%) put a transformer on the 48x48 input and further ones before later
conv stages, with conv stages of 100-350 filters. Ours keeps that shape (transformer on the input,
optionally one before each later stage; conv + BatchNorm + ReLU + max-pool; dropout head) at a
width that trains on 2 CPU cores: 32/64/128 filters, ~940 training images/s (an epoch of the 39,209
training images in ~45 s; benchmarks/bench_train.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from stnkit.models.mnist import cnn_localization
from stnkit.models.parts import (
    Classifier,
    ImageStandardize,
    LocalContrastNorm,
    conv_stage,
    feature_shape,
    mlp,
)
from stnkit.models.registry import register_model
from stnkit.nn import SpatialTransformer

__all__ = ["build_gtsrb_net"]


def build_gtsrb_net(
    *,
    in_channels: int = 3,
    num_classes: int = 43,
    image_size: int | Sequence[int] = (32, 32),
    channels: Sequence[int] = (32, 64, 128),
    kernel_sizes: Sequence[int] = (5, 3, 3),
    hidden: Sequence[int] = (256,),
    dropout: float = 0.5,
    transform: str | None = "affine",
    stn_stages: Sequence[int] = (0,),
    loc_channels: Sequence[int] = (32, 64),
    loc_features: int = 128,
    standardize: bool = False,
    local_contrast: bool = False,
) -> Classifier:
    """Conv + BN + ReLU + max-pool stages with transformers before the chosen stages.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        image_size: input (H, W).
        channels: output channels per conv stage.
        kernel_sizes: kernel size per conv stage ("same" padding).
        hidden: hidden widths of the head.
        dropout: dropout in the head.
        transform: the transformers' transform, None for the baseline.
        stn_stages: stages preceded by a transformer; 0 is the input.
        loc_channels: conv channels of each localisation net.
        loc_features: width of their fully connected layer.
        standardize: contrast-normalise each image (:class:`ImageStandardize`) where the input
            enters the localisation net and the first conv stage; the transformer itself samples
            the raw image, so its output stays a picture.
        local_contrast: the same places, :class:`LocalContrastNorm` instead (the records'
            preprocessing: it also evens out light within an image); not with ``standardize``.
    """
    if standardize and local_contrast:
        raise ValueError("choose one of standardize and local_contrast, not both")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    input_shape = (in_channels, int(image_size[0]), int(image_size[1]))
    shape: tuple[int, ...] = input_shape
    stn: nn.Module | None = None
    normalize = standardize or local_contrast
    layers: list[nn.Module] = [_contrast_norm(in_channels, local_contrast)] if normalize else []
    for stage, (c, k) in enumerate(zip(channels, kernel_sizes)):
        if transform is not None and stage in stn_stages:
            # The input transformer looks at a 2x downsampled image; later ones at the maps.
            loc: nn.Module = cnn_localization(
                shape[0],
                channels=loc_channels,
                out_features=loc_features,
                downsample=2 if stage == 0 else 1,
            )
            if normalize and stage == 0:
                loc = nn.Sequential(_contrast_norm(in_channels, local_contrast), loc)
            module = SpatialTransformer(localization=loc, transform=transform)
            if stage == 0:
                stn = module
            else:
                layers.append(module)
        block = conv_stage(shape[0], c, k, padding=k // 2, norm=True)
        layers.append(block)
        shape = feature_shape(block, shape)
    features = nn.Sequential(*layers)
    head = mlp(int(shape[0] * shape[1] * shape[2]), hidden, num_classes, dropout=dropout)
    return Classifier(features=features, head=head, stn=stn, input_shape=input_shape)


def _contrast_norm(in_channels: int, local: bool) -> nn.Module:
    return LocalContrastNorm(in_channels) if local else ImageStandardize()


@register_model("gtsrb-cnn")
def gtsrb_cnn(**kwargs: Any) -> Classifier:
    """The GTSRB network without transformers (baseline)."""
    return build_gtsrb_net(transform=None, **kwargs)


@register_model("gtsrb-st-cnn")
def gtsrb_st_cnn(**kwargs: Any) -> Classifier:
    """The GTSRB network with one affine transformer on the input."""
    return build_gtsrb_net(**kwargs)


@register_model("gtsrb-multi-st-cnn")
def gtsrb_multi_st_cnn(**kwargs: Any) -> Classifier:
    """The GTSRB network with affine transformers before each of its three conv stages."""
    kwargs.setdefault("stn_stages", (0, 1, 2))
    return build_gtsrb_net(**kwargs)
