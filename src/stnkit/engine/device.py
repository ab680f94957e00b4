"""Where a run computes: ``"cpu"`` (every machine) or ``"cuda"``/``"cuda:N"`` (a GPU, where torch has one).

The data layer always yields CPU tensors; the engine moves each batch to the model's device, so
a model moved with ``model.to(device)`` is all a caller changes. Results, checkpoints and pictures
come back to the CPU: a checkpoint written on a GPU loads on any machine.
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["check_device_name", "model_device", "resolve_device"]

_DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")


def check_device_name(name: object) -> str:
    """Return ``name`` if it names a device a run may ask for, else raise ValueError (one line)."""
    if not isinstance(name, str) or not _DEVICE_NAME.fullmatch(name):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return name


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` for ``name``, after checking that this machine has it.

    Raises:
        ValueError: a malformed name, or a CUDA device this torch build or machine does not have.
    """
    device = torch.device(check_device_name(name))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "built without CUDA" if torch.version.cuda is None else "sees no GPU"
            raise ValueError(f"device {name!r} asked for, but torch {torch.__version__} here {build}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r} asked for, but this machine has {count} GPU(s)")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
