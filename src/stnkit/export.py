"""ONNX export of a classifier with its spatial transformer, checked against onnxruntime.

Needs the ``onnx`` extra (``pip install 'stnkit[onnx]'``: onnx, onnxscript and onnxruntime).

Example:
    >>> import torch
    >>> from stnkit.models import create_model
    >>> model = create_model("st-fcn-affine", image_size=(28, 28)).eval()
    >>> path = export_onnx(model, torch.rand(2, 1, 28, 28), "st-fcn.onnx")  # doctest: +SKIP
    >>> onnx_max_abs_diff(model, path, torch.rand(8, 1, 28, 28)) < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["MIN_OPSET", "MissingDependencyError", "export_onnx", "onnx_max_abs_diff", "require_onnx"]

MIN_OPSET = 16  # GridSample entered the standard in opset 16
INSTALL_HINT = "pip install 'stnkit[onnx]'"


class MissingDependencyError(ImportError):
    """An optional package that a feature needs is not installed; the message says what to install."""


def require_onnx(*, runtime: bool = True) -> None:
    """Check that the ``onnx`` extra is installed (``runtime``: onnxruntime too, for the check).

    Raises:
        MissingDependencyError: the message names the missing packages and the install command.
    """
    _require("onnx", "onnxscript", *(("onnxruntime",) if runtime else ()))


def _require(*modules: str) -> None:
    """Import ``modules`` or raise :class:`MissingDependencyError` naming the missing ones."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"ONNX export needs onnx, onnxscript and onnxruntime; {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}"
        )


class _Logits(nn.Module):
    """Export wrapper: plain logits (the transformer's stored ``last_params`` play no part)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *, opset: int = 18) -> Path:
    """Export ``model`` (put in eval mode) to ONNX with a dynamic batch dimension.

    Args:
        model: a classifier; its output is exported as ``logits``.
        example: Tensor[N, C, H, W], an input of the right shape (the batch size is free).
        path: the ``.onnx`` file; its folder must exist.
        opset: ONNX opset, at least :data:`MIN_OPSET`.

    Raises:
        ValueError: ``opset`` is below :data:`MIN_OPSET`.
        FileNotFoundError: the folder of ``path`` does not exist.
        MissingDependencyError: onnx or onnxscript is not installed.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (GridSample), got {opset}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of the ONNX file does not exist: {path.parent}")
    require_onnx(runtime=False)
    wrapper = _Logits(model).eval()
    with warnings.catch_warnings():
        # The transformer keeps `last_params` for regularisers; export warns that it is not a
        # buffer, which is harmless for inference.
        warnings.filterwarnings("ignore", message=".*last_params was assigned during export")
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),  # any batch size
            dynamo=True,  # the TorchScript exporter cannot trace the TPS lattice checks
            verbose=False,
        )
    return path


def onnx_max_abs_diff(model: nn.Module, path: str | Path, inputs: Tensor) -> float:
    """Largest |torch - onnxruntime| over the logits for ``inputs`` (Tensor[N, C, H, W]).

    Raises:
        MissingDependencyError: onnxruntime is not installed.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(inputs).numpy()
    (got,) = session.run(["logits"], {"images": inputs.numpy()})
    return float(np.abs(got - expected).max())
