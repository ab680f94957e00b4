"""Learnable layers: the spatial transformer, ready localisation networks, and the conv behind it."""

from stnkit.nn.conv import InputGradConv2d
from stnkit.nn.localization import LocalizationCNN, LocalizationMLP
from stnkit.nn.spatial_transformer import SpatialTransformer

__all__ = ["InputGradConv2d", "LocalizationCNN", "LocalizationMLP", "SpatialTransformer"]
