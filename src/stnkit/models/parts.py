"""Building blocks of the classifiers: the classifier shell, conv stages and parallel transformers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stnkit.nn import InputGradConv2d, SpatialTransformer

__all__ = [
    "Classifier",
    "ImageStandardize",
    "LocalContrastNorm",
    "ParallelSpatialTransformer",
    "conv_stage",
    "count_parameters",
    "feature_shape",
    "mlp",
]


class Classifier(nn.Module):
    """An optional spatial transformer on the input, then features, then a head.

    Stages, so that visualisation and export can call them one by one:
    ``transform(x)`` (identity without a transformer), ``forward_features(x)`` (transform, then
    features), ``forward_head(features) -> logits``. Transformers on feature maps live inside
    ``features``; :meth:`spatial_transformers` lists them all.

    Args:
        features: the trunk (conv stages or hidden layers), may hold further transformers.
        head: features to logits.
        stn: the transformer applied to the input, or None for a baseline.
    """

    def __init__(self, *, features: nn.Module, head: nn.Module, stn: nn.Module | None = None):
        super().__init__()
        self.stn = stn
        self.features = features
        self.head = head

    def transform(self, x: Tensor) -> Tensor:
        """The input as the classifier sees it (after the input transformer)."""
        return x if self.stn is None else self.stn(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """Transform the input, then run the trunk."""
        return self.features(self.transform(x))

    def forward_head(self, features: Tensor) -> Tensor:
        """Features to logits (B, num_classes)."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes) for images (B, C, H, W)."""
        return self.forward_head(self.forward_features(x))

    def spatial_transformers(self) -> list[nn.Module]:
        """Every transformer in the model, the input one first (empty for baselines)."""
        found = [self.stn] if self.stn is not None else []
        for module in self.features.modules():
            if isinstance(module, SpatialTransformer | ParallelSpatialTransformer):
                found.append(module)
        return found


class ParallelSpatialTransformer(nn.Module):
    """``num_heads`` transformers that share one localisation net; outputs stacked on channels.

    The localisation features are computed once; each head regresses its own parameters from them
    (each head is a :class:`stnkit.SpatialTransformer` whose localisation is the identity on those
    features) and warps the whole input. The paper's 2xST-FCN/2xST-CNN for MNIST addition use two.

    Args:
        localization: input (B, C, H, W) to features (B, F); needs ``.out_features``.
        num_heads: number of parallel transformers k.
        transform: transform name or object, as for :class:`stnkit.SpatialTransformer`.
        out_size: output size of every head (None: the input size).

    Shapes: input (B, C, H, W) -> output (B, k*C, H_out, W_out); ``localize`` gives (B, k, P).
    """

    def __init__(
        self,
        *,
        localization: nn.Module,
        num_heads: int = 2,
        transform: str = "affine",
        out_size: int | tuple[int, int] | None = None,
    ):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.localization = localization
        num_features = getattr(localization, "out_features", None)
        if not isinstance(num_features, int):
            raise ValueError("localization needs an int attribute out_features")
        self.heads = nn.ModuleList(
            SpatialTransformer(
                localization=nn.Identity(),
                transform=transform,
                out_size=out_size,
                num_features=num_features,
            )
            for _ in range(num_heads)
        )

    def head_list(self) -> list[SpatialTransformer]:
        """The heads, typed."""
        return [cast(SpatialTransformer, head) for head in self.heads]

    def localize(self, x: Tensor) -> Tensor:
        """Parameters of every head, (B, k, P)."""
        features = self.localization(x)  # (B, F), computed once for all heads
        return torch.stack([head.localize(features) for head in self.head_list()], dim=1)

    def warp(self, x: Tensor, params: Tensor) -> Tensor:
        """Warp ``x`` with each head's parameters and stack the results on channels."""
        heads = self.head_list()
        return torch.cat([head.warp(x, params[:, i]) for i, head in enumerate(heads)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, k*C, H_out, W_out)."""
        return self.warp(x, self.localize(x))


class ImageStandardize(nn.Module):
    """Each image minus its own mean, over its own standard deviation (all channels together).

    Contrast normalisation for photographs taken in any light (GTSRB's signs range from nearly
    black to washed out): a dark, flat image and a bright, contrasty one of the same sign come out
    alike, and colour ratios are kept because the channels share one mean and deviation.
    ``eps`` floors the variance so a nearly uniform image is not blown up into noise.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps)


class LocalContrastNorm(nn.Module):
    """Subtractive, then divisive local contrast normalisation (Jarrett et al. 2009), per image.

    Each pixel minus the Gaussian-weighted mean of its neighbourhood (all channels together), over
    the Gaussian-weighted standard deviation there; where that deviation is below the image's mean
    deviation, the mean is used instead, so flat regions are not blown up into noise. This is the
    preprocessing of the GTSRB records (Sermanet & LeCun 2011; Moodstocks; Arcos-Garcia et al. 2018):
    unlike :class:`ImageStandardize` it works per neighbourhood, so part of a sign in shadow keeps
    more of its contrast (up to that floor). Near the border the window's weights are renormalised over the
    pixels inside the image instead of counting zeros.

    Shapes: (B, C, H, W) -> (B, C, H, W).

    Args:
        in_channels: image channels (the window spans all of them).
        kernel_size: side of the Gaussian window, odd.
        sigma: its standard deviation in pixels.
        eps: floor of the divisor.
    """

    window: Tensor

    def __init__(self, in_channels: int = 3, kernel_size: int = 7, sigma: float = 2.0, eps: float = 1e-3):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.eps = eps
        self.padding = kernel_size // 2
        offsets = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
        gauss = torch.exp(-(offsets**2) / (2 * sigma**2))
        window = (gauss[:, None] * gauss[None, :]).expand(in_channels, kernel_size, kernel_size)
        # (1, C, k, k), summing to 1: one weighted mean over the window and the channels. Derived from
        # the arguments, so not saved in checkpoints.
        self.register_buffer("window", (window / window.sum()).unsqueeze(0).float(), persistent=False)

    def _local_mean(self, x: Tensor, coverage: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, 1, H, W): the window's weighted mean of the pixels inside the image.
        return F.conv2d(x, self.window.to(x.dtype), padding=self.padding) / coverage

    def forward(self, x: Tensor) -> Tensor:
        # The window's weight that falls inside the image, (1, 1, H, W): 1 away from the border.
        ones = torch.ones_like(x[:1])
        coverage = F.conv2d(ones, self.window.to(x.dtype), padding=self.padding)
        centred = x - self._local_mean(x, coverage)
        # Floored before the square root, whose derivative is infinite at 0 (a flat patch).
        variance = self._local_mean(centred.square(), coverage).clamp_min(self.eps**2)
        deviation = variance.sqrt()  # (B, 1, H, W)
        floor = deviation.mean(dim=(2, 3), keepdim=True)  # the image's mean deviation, (B, 1, 1, 1)
        return centred / torch.maximum(deviation, floor)


def conv_stage(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    padding: int = 0,
    pool: int = 2,
    norm: bool = False,
    act_layer: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Conv -> (BatchNorm) -> activation -> max-pool.

    The conv is an :class:`stnkit.nn.InputGradConv2d`: behind a spatial transformer, where its input
    needs a gradient, that is computed much faster for few input channels; elsewhere it is nn.Conv2d.
    """
    layers: list[nn.Module] = [
        InputGradConv2d(in_channels, out_channels, kernel_size, padding=padding, bias=not norm)
    ]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(act_layer())
    if pool > 1:
        layers.append(nn.MaxPool2d(pool))
    return nn.Sequential(*layers)


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int | None = None,
    *,
    dropout: float = 0.0,
    act_layer: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Flatten, then Linear -> activation (-> dropout) per hidden width, then an optional output."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), act_layer()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


@torch.no_grad()
def feature_shape(module: nn.Module, in_shape: Sequence[int]) -> tuple[int, ...]:
    """Output shape (without batch) of ``module`` for one input of shape ``in_shape``."""
    was_training = module.training
    module.eval()
    shape = tuple(module(torch.zeros(1, *in_shape)).shape[1:])
    module.train(was_training)
    return shape


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
