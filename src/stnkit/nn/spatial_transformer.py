"""The spatial transformer layer: localise -> grid -> sample."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stnkit.geometry.checks import (
    NonFiniteError,
    check_choice,
    check_flag,
    check_positive_int,
    check_tensor,
    normalize_size,
)
from stnkit.geometry.sampling import BACKENDS, MODES, PADDING_MODES
from stnkit.geometry.transforms import Transform, get_transform
from stnkit.geometry.warp import warp
from stnkit.nn.localization import infer_num_features

__all__ = ["SpatialTransformer"]


class SpatialTransformer(nn.Module):
    """A spatial transformer (Jaderberg et al. 2015) for images or feature maps, 4-D or 5-D.

    ``localization`` maps the input to features (N, F); a linear regression head maps them to the
    transform's parameters. The head starts with zero weights and the identity as its bias, so a freshly
    built layer returns its input unchanged (up to float rounding) and training starts from the identity
    instead of collapsing.

    Stages, callable on their own (e.g. for visualisation): :meth:`localize` (x -> params),
    :meth:`warp` (x, params -> warped x), :meth:`grid` (params -> sampling grid).

    Args:
        localization: module mapping the input to features of shape (N, F).
        transform: name from :func:`stnkit.list_transforms` or a :class:`stnkit.Transform`.
        out_size: spatial size of the output (H, W) / (D, H, W) or an int; ``None`` keeps the input's.
        mode: ``"bilinear"``, ``"nearest"`` or ``"bicubic"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: torch's meaning; see the convention in :mod:`stnkit.geometry`.
        num_features: F; inferred from ``localization.out_features`` or its last ``nn.Linear`` if omitted.
        backend: sampler backend, ``"native"`` or ``"reference"``.

    Attributes:
        last_params: parameters predicted in the last forward pass, Tensor[N, num_params], still attached
            to the graph (usable in a regulariser); ``None`` before the first call.

    Example:
        >>> from stnkit.nn import LocalizationCNN
        >>> stn = SpatialTransformer(localization=LocalizationCNN(in_channels=1), transform="affine")
        >>> x = torch.rand(4, 1, 28, 28)
        >>> torch.allclose(stn(x), x, atol=1e-5)
        True
    """

    last_params: Tensor | None

    def __init__(
        self,
        *,
        localization: nn.Module,
        transform: str | Transform = "affine",
        out_size: int | tuple[int, ...] | None = None,
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        align_corners: bool = False,
        num_features: int | None = None,
        backend: str = "native",
    ) -> None:
        super().__init__()
        if not isinstance(localization, nn.Module):
            raise TypeError(f"localization must be an nn.Module, got {type(localization).__name__}")
        self.localization = localization
        self.transform = get_transform(transform)
        self.mode = check_choice(mode, "mode", MODES)
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.backend = check_choice(backend, "backend", BACKENDS)
        self.align_corners = check_flag(align_corners, "align_corners")
        self.out_size = (
            None if out_size is None else normalize_size(out_size, "out_size", self.transform.spatial_dims)
        )
        if num_features is not None:
            num_features = check_positive_int(num_features, "num_features")
        features = num_features if num_features is not None else infer_num_features(localization)
        if features is None:
            raise ValueError(
                "cannot tell the feature width of localization: give num_features=F, or a module "
                "with an int attribute out_features, or one whose last layer is nn.Linear"
            )
        self.head = nn.Linear(features, self.transform.num_params)
        self.reset_head()
        self.last_params = None

    def reset_head(self) -> None:
        """Zero the regression weights and set the bias to the identity parameters."""
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(self.transform.identity(dtype=self.head.bias.dtype))

    def localize(self, x: Tensor) -> Tensor:
        """Predict transform parameters: Tensor[N, ...] -> Tensor[N, num_params]."""
        dtype = self.head.weight.dtype
        # Under autocast, layers before the transformer may hand it half-precision features.
        if check_tensor(x, "input").dtype != dtype and not _autocast_enabled(x.device.type):
            # A module can follow a floating input's dtype; integer images are to be converted.
            module_too = f" or the module with .to({x.dtype})" if x.dtype.is_floating_point else ""
            raise TypeError(
                f"SpatialTransformer expects {dtype} input (its parameters' dtype), got {x.dtype}; "
                f"convert with x.to({dtype}){module_too}"
            )
        features = self.localization(x)
        if features.dim() != 2 or features.shape[0] != x.shape[0]:
            raise ValueError(
                f"localization must return (N, F) features with N = {x.shape[0]}, got {list(features.shape)}"
            )
        if features.shape[1] != self.head.in_features:
            raise ValueError(
                f"localization returned {features.shape[1]} features, the head expects "
                f"{self.head.in_features} (set num_features to match)"
            )
        return self.head(features)

    def warp(self, x: Tensor, params: Tensor) -> Tensor:
        """Sample ``x`` on the grid of ``params``: Tensor[N, C, H, W] -> Tensor[N, C, *out_size]."""
        return warp(
            x,
            params,
            transform=self.transform,
            out_size=self.out_size,
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            backend=self.backend,
        )

    def grid(self, params: Tensor, input_size: tuple[int, ...]) -> Tensor:
        """The sampling grid of ``params`` for an input of size ``input_size`` (N, C, H, W)."""
        size = tuple(input_size) if self.out_size is None else (*input_size[:2], *self.out_size)
        return self.transform.grid(params, size, align_corners=self.align_corners)

    def forward(self, x: Tensor) -> Tensor:
        """Localise, then warp: Tensor[N, C, H, W] -> Tensor[N, C, *out_size]."""
        params = self.localize(x)
        self.last_params = params
        try:
            return self.warp(x, params)
        except NonFiniteError as err:
            # Checked on this error path only: non-finite parameters from a non-finite input are the
            # input's fault, and the message should say so rather than blame the localisation net.
            bad = int((~torch.isfinite(x)).sum())
            if bad:
                raise NonFiniteError(
                    f"input holds {bad} non-finite value(s) (NaN or inf), and the parameters predicted "
                    "from it are not finite either"
                ) from err
            raise

    def extra_repr(self) -> str:
        return (
            f"transform={self.transform!r}, out_size={self.out_size}, mode={self.mode!r}, "
            f"padding_mode={self.padding_mode!r}, align_corners={self.align_corners}"
        )


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (False for devices autocast does not know, e.g. meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False
