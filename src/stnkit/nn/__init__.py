"""Learnable layers: the spatial transformer and ready localisation networks."""

from stnkit.nn.localization import LocalizationCNN, LocalizationMLP
from stnkit.nn.spatial_transformer import SpatialTransformer

__all__ = ["LocalizationCNN", "LocalizationMLP", "SpatialTransformer"]
