"""Ready localisation networks: they map an input to a feature vector (N, out_features).

The regression head that turns features into transform parameters belongs to
:class:`stnkit.SpatialTransformer`, which initialises it to the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from stnkit.geometry.checks import check_positive_int, check_tensor, check_widths

__all__ = ["LocalizationCNN", "LocalizationMLP"]


class LocalizationMLP(nn.Module):
    """Fully connected localisation network, as in the paper's ST-FCN.

    Flattens the input and applies ``Linear -> act`` for each hidden width.

    Args:
        in_features: C * H * W of the inputs it will see.
        hidden: widths of the hidden layers; the last one is ``out_features``.
        act_layer: activation class.

    Example:
        >>> net = LocalizationMLP(in_features=28 * 28, hidden=(32, 32))
        >>> net(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 32])
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden: Sequence[int] = (32, 32),
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive_int(in_features, "in_features")
        _check_layer_class(act_layer, "act_layer")
        if not check_widths(hidden, "hidden"):
            raise ValueError("hidden must name at least one layer width")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for out in hidden:
            layers += [nn.Linear(width, out), act_layer()]
            width = out
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        """(N, *) with C * H * W == in_features -> (N, out_features)."""
        if check_tensor(x, "input").dim() < 2:
            raise ValueError(f"LocalizationMLP expects a batch (N, ...), got shape {list(x.shape)}")
        features = x.flatten(1)
        if features.shape[1] != self.in_features:
            raise ValueError(
                f"LocalizationMLP expects inputs with {self.in_features} values per sample, "
                f"got {features.shape[1]} (input shape {list(x.shape)})"
            )
        return self.layers(features)


class LocalizationCNN(nn.Module):
    """Convolutional localisation network, as in the paper's ST-CNN (any input size).

    ``[avg-pool by downsample] -> (conv -> act -> max-pool 2) per entry of channels -> adaptive average
    pool to ``pooled_size`` -> Linear -> act``. The paper's localisation nets look at a downsampled input;
    ``downsample`` does that cheaply, and the adaptive pool makes the network accept any spatial size.

    Args:
        in_channels: channels of the input.
        channels: output channels of each conv stage.
        kernel_size: conv kernel size (odd; padded to keep the size).
        out_features: width of the final fully connected layer.
        downsample: integer factor of the initial average pooling (1 = none).
        pooled_size: spatial size the last conv stage is pooled to before the fully connected layer.
        act_layer: activation class.

    Example:
        >>> net = LocalizationCNN(in_channels=1, downsample=2)
        >>> net(torch.rand(3, 1, 42, 42)).shape
        torch.Size([3, 50])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Sequence[int] = (20, 20),
        kernel_size: int = 5,
        out_features: int = 50,
        downsample: int = 1,
        pooled_size: int = 3,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        for value, name in (
            (in_channels, "in_channels"),
            (out_features, "out_features"),
            (pooled_size, "pooled_size"),
        ):
            check_positive_int(value, name)
        check_widths(channels, "channels")
        _check_layer_class(act_layer, "act_layer")
        check_positive_int(downsample, "downsample")  # 1: no downsampling
        if check_positive_int(kernel_size, "kernel_size") % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        layers: list[nn.Module] = []
        if downsample > 1:
            layers.append(nn.AvgPool2d(downsample, ceil_mode=True))
        width = in_channels
        for out in channels:
            layers += [
                nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2),
                act_layer(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            width = out
        layers += [nn.AdaptiveAvgPool2d(pooled_size), nn.Flatten()]
        layers += [nn.Linear(width * pooled_size * pooled_size, out_features), act_layer()]
        self.layers = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, out_features)."""
        if check_tensor(x, "input").dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"LocalizationCNN expects (N, {self.in_channels}, H, W), got {list(x.shape)}")
        return self.layers(x)


def _last_linear_width(module: nn.Module) -> int | None:
    """out_features of the module or of its last nn.Linear, if it has one."""
    width = getattr(module, "out_features", None)
    if isinstance(width, int):
        return width
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def infer_num_features(module: nn.Module) -> int | None:
    """Best guess of a localisation module's feature width, or None if it cannot be told."""
    return _last_linear_width(module)


def _check_layer_class(value: object, name: str) -> None:
    """A layer class such as ``nn.ReLU`` (each use builds a fresh layer), not an instance of one."""
    if not (isinstance(value, type) and issubclass(value, nn.Module)):
        hint = (
            f" (pass the class, {type(value).__name__}, not an instance)"
            if isinstance(value, nn.Module)
            else ""
        )
        raise TypeError(f"{name} must be an nn.Module class such as nn.ReLU, got {value!r}{hint}")
