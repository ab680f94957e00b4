"""8-bit pixels and the float32 images the loaders give: the one conversion both ways.

The distortions and the augmentation sample uint8 images exactly (:func:`stnkit.geometry.sample_fixed_point`)
and hand out float32 multiples of 1/255, like the plain MNIST and GTSRB loaders.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["to_uint8", "to_unit_float"]


def to_uint8(images: Tensor, name: str = "images") -> Tensor:
    """uint8 (B, [C,] H, W) as it is, or float in [0, 1] rounded to 1/255 steps -> uint8 (B, C, H, W).

    Raises:
        TypeError: an integer dtype other than uint8 (the message calls the tensor ``name``).
    """
    if images.dim() == 3:
        images = images[:, None]
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise TypeError(f"{name} must be uint8, or floating point in [0, 1], got {images.dtype}")
    return (images.double() * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 -> float32 in [0, 1] (exactly the multiples of 1/255 the loaders give)."""
    return images.float().div_(255.0)
