"""The spatial transformer as a Keras 3 layer: localise -> regress parameters -> warp."""

from __future__ import annotations

from typing import Any

import keras

from stnkit.keras.grids import check_flag, check_size, identity_params, num_params
from stnkit.keras.sampling import MODES, PADDING_MODES, check_choice, check_data_format, warp

__all__ = ["SpatialTransformer"]


@keras.saving.register_keras_serializable(package="stnkit")
class SpatialTransformer(keras.layers.Layer):
    """Spatial transformer (Jaderberg et al. 2015): warps its input with parameters it regresses from it.

    ``localization`` maps the input to features (N, F); a ``Dense`` regression head, created here with
    zero weights and the identity parameters as its bias, maps them to the transform's parameters. A
    freshly built layer is therefore the identity warp (resampled to ``output_size``), and its gradient
    there is torch's forward difference, so training starts from the untouched input.

    Args:
        localization: any Keras layer or model mapping the input (in ``data_format``) to (N, F).
        transform: ``"translation"``, ``"attention"``, ``"similarity"``, ``"affine"``, ``"projective"``
            or ``"tps"`` (parameter layouts as :func:`stnkit.get_transform`).
        output_size: (H, W) of the output, or an int; ``None`` keeps the input's.
        num_control_points: K for ``"tps"``, a perfect square >= 4.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: torch's meaning (``docs/convention.md``).
        data_format: ``"channels_last"`` (Keras' default) or ``"channels_first"``; ``None`` is Keras'
            ``image_data_format()``.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:
        >>> localization = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16, "relu")])
        >>> stn = SpatialTransformer(localization, transform="affine", output_size=(14, 14))
        >>> tuple(stn(keras.ops.ones((2, 28, 28, 1))).shape)
        (2, 14, 14, 1)
    """

    def __init__(
        self,
        localization: keras.layers.Layer,
        *,
        transform: str = "affine",
        output_size: int | tuple[int, int] | None = None,
        num_control_points: int = 16,
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        align_corners: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(localization, keras.layers.Layer):
            raise TypeError(
                f"localization must be a keras Layer or Model mapping images to (N, F), got {type(localization).__name__}"
            )
        size = num_params(transform, num_control_points)  # validates both
        self.localization = localization
        self.transform = transform
        self.output_size = None if output_size is None else check_size(output_size)
        self.num_control_points = num_control_points
        self.mode = check_choice(mode, "mode", MODES)
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.align_corners = check_flag(align_corners, "align_corners")
        self.data_format = check_data_format(data_format)
        # Zero weights and the identity as bias: a fresh transformer is the identity warp.
        self.regression = keras.layers.Dense(
            size,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(
                identity_params(transform, num_control_points).tolist()
            ),
            name="regression",
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build the localisation network on ``input_shape`` and the regression head on its features."""
        if len(input_shape) != 4:
            layout = "(N, H, W, C)" if self.data_format == "channels_last" else "(N, C, H, W)"
            raise ValueError(f"SpatialTransformer expects {layout} inputs, got shape {list(input_shape)}")
        # Calling the localisation net on a symbolic tensor builds it, whatever kind of layer it is.
        features = self.localization(keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype))
        if len(features.shape) != 2 or features.shape[1] is None:
            raise ValueError(
                f"localization must map images to (N, F) features, got shape {list(features.shape)}"
            )
        self.regression.build(features.shape)

    def localize(self, inputs: Any) -> Any:
        """The transform parameters (N, num_params) the layer regresses from ``inputs``."""
        return self.regression(self.localization(inputs))

    def warp(self, inputs: Any, params: Any) -> Any:
        """``inputs`` warped with ``params`` (N, num_params), with this layer's settings."""
        return warp(
            inputs,
            params,
            transform=self.transform,
            output_size=self.output_size,
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            data_format=self.data_format,
        )

    def call(self, inputs: Any) -> Any:
        """(N, H, W, C) -> (N, Ho, Wo, C) (or channels first)."""
        return self.warp(inputs, self.localize(inputs))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if self.output_size is None:
            return tuple(input_shape)
        height, width = self.output_size
        if self.data_format == "channels_last":
            return (input_shape[0], height, width, input_shape[3])
        return (input_shape[0], input_shape[1], height, width)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            localization=keras.saving.serialize_keras_object(self.localization),
            transform=self.transform,
            output_size=None if self.output_size is None else list(self.output_size),
            num_control_points=self.num_control_points,
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            data_format=self.data_format,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpatialTransformer:
        config = dict(config)
        config["localization"] = keras.saving.deserialize_keras_object(config["localization"])
        if config.get("output_size") is not None:
            config["output_size"] = tuple(config["output_size"])
        return cls(**config)
