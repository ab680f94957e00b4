"""Building blocks of the classifiers: the classifier shell, conv stages and parallel transformers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stnkit.geometry.checks import check_positive_int, check_widths
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
        input_shape: (C, H, W) of the images it was built for; others are refused with a message
            that says so (rather than a matrix product's mismatch deep in the head). None: any.
    """

    def __init__(
        self,
        *,
        features: nn.Module,
        head: nn.Module,
        stn: nn.Module | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ):
        super().__init__()
        self.stn = stn
        self.features = features
        self.head = head
        self.input_shape = input_shape

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
        # Static sizes only (no values read): safe under tracing, free on any device.
        if self.input_shape is not None and (x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape):
            c, h, w = self.input_shape
            raise ValueError(
                f"{type(self).__name__} was built for (N, {c}, {h}, {w}) images, got {list(x.shape)}"
            )
        return self.forward_head(self.forward_features(x))

    def spatial_transformers(self) -> list[nn.Module]:
        """Every transformer in the model, the input one first (empty for baselines)."""
        found = [self.stn] if self.stn is not None else []
        for module in self.features.modules():
            if isinstance(module, SpatialTransformer | ParallelSpatialTransformer):
                found.append(module)
        return found


class ParallelSpatialTransformer(nn.Module):
    """``num_heads`` transformers side by side on one input; their outputs stacked on channels.

    Each head regresses its own parameters and warps the whole input. With one ``localization``
    module the heads share it: its features are computed once and each head's regression layer reads
    them (the head is a :class:`stnkit.SpatialTransformer` whose localisation is the identity on
    those features). With a list of modules, one per head, each head has a localisation net of its
    own, as two independent transformers would. The paper's 2xST-FCN/2xST-CNN for MNIST addition use
    two heads.

    Args:
        localization: input (B, C, H, W) to features (B, F), with ``.out_features``, shared by the
            heads; or a sequence (or ``nn.ModuleList``) of ``num_heads`` such modules, one per head.
        num_heads: number of parallel transformers k.
        transform: transform name or object, as for :class:`stnkit.SpatialTransformer`.
        out_size: output size of every head (None: the input size).

    Shapes: input (B, C, H, W) -> output (B, k*C, H_out, W_out); ``localize`` gives (B, k, P).
    """

    localization: nn.Module | None

    def __init__(
        self,
        *,
        localization: nn.Module | Sequence[nn.Module],
        num_heads: int = 2,
        transform: str = "affine",
        out_size: int | tuple[int, int] | None = None,
    ):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if isinstance(localization, nn.Module) and not isinstance(localization, nn.ModuleList):
            self.localization = localization
            num_features = getattr(localization, "out_features", None)
            if not isinstance(num_features, int):
                raise ValueError("localization needs an int attribute out_features")
            own: list[nn.Module] = [nn.Identity() for _ in range(num_heads)]
        else:
            own = list(localization)
            if len(own) != num_heads:
                raise ValueError(f"one localization per head: {num_heads} heads, got {len(own)} modules")
            self.localization = None  # each head localises on its own
            num_features = None
        self.heads = nn.ModuleList(
            SpatialTransformer(
                localization=loc, transform=transform, out_size=out_size, num_features=num_features
            )
            for loc in own
        )

    @property
    def shares_localization(self) -> bool:
        """Whether the heads read one localisation net's features (else each has its own)."""
        return self.localization is not None

    def head_list(self) -> list[SpatialTransformer]:
        """The heads, typed."""
        return [cast(SpatialTransformer, head) for head in self.heads]

    def localize(self, x: Tensor) -> Tensor:
        """Parameters of every head, (B, k, P)."""
        # Shared: the features (B, F) once for all heads; else each head localises the input itself.
        features = x if self.localization is None else self.localization(x)
        return torch.stack([head.localize(features) for head in self.head_list()], dim=1)

    def warp(self, x: Tensor, params: Tensor) -> Tensor:
        """Warp ``x`` with each head's parameters and stack the results on channels."""
        heads = self.head_list()
        return torch.cat([head.warp(x, params[:, i]) for i, head in enumerate(heads)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, k*C, H_out, W_out)."""
        return self.warp(x, self.localize(x))

    @torch.no_grad()
    def channel_following(self, x: Tensor) -> Tensor:
        """How closely where each head looks follows where each input channel's content is.

        Where a head looks is the mean of its sampling grid (the input point its output is centred
        on); where a channel's content is, its intensity-weighted centre. Entry (i, c) is the
        correlation over the batch between the two, the mean of the x and y correlations. Heads that
        each take one digit of a two-channel MNIST-addition image show one entry near 1 per row, in
        different columns; heads that all follow one channel, a column of them.

        Args:
            x: a batch of at least two images, (B, C, H, W), with non-negative intensities.

        Returns:
            Tensor[k, C] in [-1, 1]; NaN where a head's gaze or a channel's centre does not move
            over the batch (a head still at its initial transform, say).
        """
        if x.dim() != 4 or x.shape[0] < 2:
            raise ValueError(f"channel_following needs images (B >= 2, C, H, W), got shape {list(x.shape)}")
        params = self.localize(x)  # (B, k, P)
        heads = self.head_list()
        gaze = torch.stack(
            [head.grid(params[:, i], tuple(x.shape)).flatten(1, -2).mean(1) for i, head in enumerate(heads)],
            dim=1,
        )  # (B, k, 2): (x, y) in normalised coordinates
        centre = _intensity_centres(x)  # (B, C, 2) (x, y) in pixels: correlation ignores the scale
        following = torch.empty(len(heads), x.shape[1], dtype=x.dtype, device=x.device)
        for i in range(len(heads)):
            for c in range(x.shape[1]):
                per_axis = [
                    torch.corrcoef(torch.stack((gaze[:, i, a], centre[:, c, a])))[0, 1] for a in (0, 1)
                ]
                following[i, c] = (per_axis[0] + per_axis[1]) / 2
        return following


def _intensity_centres(x: Tensor) -> Tensor:
    """The intensity-weighted centre of each channel, Tensor[B, C, 2] (x, y) in pixels (NaN if empty)."""
    h, w = x.shape[-2:]
    mass = x.sum((-2, -1))  # (B, C)
    cols = (x.sum(-2) * torch.arange(w, dtype=x.dtype, device=x.device)).sum(-1) / mass
    rows = (x.sum(-1) * torch.arange(h, dtype=x.dtype, device=x.device)).sum(-1) / mass
    return torch.stack((cols, rows), dim=-1)


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
    check_positive_int(in_features, "in_features")
    check_widths(hidden, "hidden")
    if out_features is not None:
        check_positive_int(out_features, "out_features")
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
