"""ONNX export of a classifier with its spatial transformer, checked against onnxruntime.

Needs the ``onnx`` extra (``pip install 'stnkit[onnx]'``: onnx, onnxscript and onnxruntime).

By default the file has one output, ``logits``. A classifier whose input transformer (``model.stn``) is
a :class:`stnkit.nn.SpatialTransformer` can also export what that transformer did, for pictures of it
(the documentation's in-browser demo draws the sampling grid from ``theta``): ask for
``outputs=TRANSFORMER_OUTPUTS``, i.e. ``("logits", "theta", "transformed")``.

Example:
    >>> import torch
    >>> from stnkit.models import create_model
    >>> model = create_model("st-fcn-affine", image_size=(28, 28)).eval()
    >>> path = export_onnx(model, torch.rand(2, 1, 28, 28), "st-fcn.onnx")  # doctest: +SKIP
    >>> onnx_max_abs_diff(model, path, torch.rand(8, 1, 28, 28)) < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from stnkit.files import atomic_write
from stnkit.geometry.checks import check_floating, check_tensor, short_repr
from stnkit.geometry.transforms import Transform
from stnkit.models.parts import Classifier
from stnkit.nn import SpatialTransformer

if TYPE_CHECKING:
    import onnx

__all__ = [
    "MIN_OPSET",
    "OUTPUTS",
    "TRANSFORMER_OUTPUTS",
    "MissingDependencyError",
    "export_onnx",
    "onnx_differences",
    "onnx_max_abs_diff",
    "reference_outputs",
    "require_onnx",
]

MIN_OPSET = 16  # GridSample entered the standard in opset 16
# What an export can output: ``logits`` (N, num_classes); the input transformer's parameters in matrix
# form ``theta`` (N, 2, 3) for the affine family, output-to-input and normalised as in
# docs/convention.md; and its output image ``transformed`` (N, C, H_out, W_out).
OUTPUTS = ("logits", "theta", "transformed")
TRANSFORMER_OUTPUTS = OUTPUTS  # every output: the logits and what the transformer did
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


class _Outputs(nn.Module):
    """Export wrapper: the classifier's stages, returning the requested outputs in order.

    With only ``logits`` it is the plain forward pass (the transformer's stored ``last_params`` play no
    part). Otherwise the input transformer's stages run one by one (localise, warp, then the trunk and
    head), which is exactly what ``model(x)`` computes, so every output belongs to the same pass.
    """

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.outputs == ("logits",):
            return (self.model(x),)
        model, stn = self.model, getattr(self.model, "stn", None)
        assert isinstance(model, Classifier) and isinstance(stn, SpatialTransformer)  # _check_outputs
        params = stn.localize(x)  # (N, num_params)
        transformed = stn.warp(x, params)  # (N, C, H_out, W_out)
        logits = model.forward_head(model.features(transformed))  # = model(x)
        found = {"logits": logits, "theta": _matrix_form(stn.transform, params), "transformed": transformed}
        return tuple(found[name] for name in self.outputs)


def _matrix_form(transform: Transform, params: Tensor) -> Tensor:
    """The parameters as a matrix: (N, 2, 3) for the affine family (translation, attention, similarity,
    affine; (N, 3, 4) in 3-D), (N, 3, 3) for a homography, (N, K, 2) control points for a TPS."""
    theta = getattr(transform, "theta", None)
    if callable(theta):  # the affine family
        return theta(params)
    if transform.has_matrix:
        return transform.matrix(params)
    return params.view(params.shape[0], *(transform.matrix_shape or (-1,)))


def _check_outputs(model: nn.Module, outputs: Sequence[str]) -> tuple[str, ...]:
    """Validate ``outputs`` for ``model``; the transformer's outputs need a SpatialTransformer ``.stn``."""
    names = tuple(outputs) if not isinstance(outputs, str) else (outputs,)
    unknown = [name for name in names if name not in OUTPUTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"outputs must be distinct names from {list(OUTPUTS)}, got {list(names)}")
    stn = getattr(model, "stn", None)
    if names != ("logits",) and not (isinstance(model, Classifier) and isinstance(stn, SpatialTransformer)):
        found = (
            f"{type(model).__name__}.stn is {type(stn).__name__}"
            if isinstance(model, Classifier)
            else (f"got a {type(model).__name__}")
        )
        raise ValueError(
            f"outputs {[n for n in names if n != 'logits']} need a stnkit.models Classifier whose input "
            f"transformer (.stn) is a stnkit.nn.SpatialTransformer; {found}"
        )
    return names


def reference_outputs(
    model: nn.Module, inputs: Tensor, outputs: Sequence[str] = ("logits",)
) -> dict[str, Tensor]:
    """What an export with ``outputs`` computes, by torch (in eval mode, no gradients; the model is left
    in the mode it came in).

    Args:
        model: a classifier; see :func:`export_onnx` for which outputs need what.
        inputs: Tensor[N, C, H, W].
        outputs: names from :data:`OUTPUTS`.

    Returns:
        name -> Tensor, e.g. ``theta`` Tensor[N, 2, 3] for an affine transformer.

    Raises:
        ValueError: unknown names, or a transformer output asked of a model without one.
    """
    names = _check_outputs(model, outputs)
    was_training = model.training
    try:
        with torch.no_grad():
            values = _Outputs(model, names).eval()(inputs)
    finally:
        model.train(was_training)  # the caller's model is left as it came
    return dict(zip(names, values))


def export_onnx(
    model: nn.Module,
    example: Tensor,
    path: str | Path,
    *,
    opset: int = 18,
    outputs: Sequence[str] = ("logits",),
) -> Path:
    """Export ``model`` (put in eval mode) to ONNX with a dynamic batch dimension.

    The input is named ``images``; the outputs are named as in ``outputs``.

    Args:
        model: a classifier; its output is exported as ``logits``.
        example: Tensor[N, C, H, W], an input of the right shape (the batch size is free).
        path: the ``.onnx`` file; its folder must exist.
        opset: ONNX opset, at least :data:`MIN_OPSET`.
        outputs: names from :data:`OUTPUTS`, in the order the file returns them. ``theta`` and
            ``transformed`` need a classifier whose ``.stn`` is a :class:`stnkit.nn.SpatialTransformer`
            (:data:`TRANSFORMER_OUTPUTS` asks for all three).

    Raises:
        ValueError: ``opset`` is below :data:`MIN_OPSET` or above the installed onnx's newest, or torch
            could not convert the graph to it, or the graph is over protobuf's 2 GiB; unknown
            ``outputs``, or transformer outputs for a model without an input transformer.
        TypeError: ``opset`` is not an int, or ``example`` is not a floating-point tensor.
        FileNotFoundError: the folder of ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        OSError: ``path`` cannot be written (the message names it). A failed export leaves any file
            already at ``path`` as it was.
        MissingDependencyError: onnx or onnxscript is not installed.
    """
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset must be an int, got {short_repr(opset)}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (GridSample), got {opset}")
    example = check_tensor(example, "example")
    check_floating(example, "example")
    names = _check_outputs(model, outputs)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of the ONNX file does not exist: {path.parent}")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder, not a file")
    require_onnx(runtime=False)
    import onnx

    if opset > onnx.defs.onnx_opset_version():
        newest = onnx.defs.onnx_opset_version()
        raise ValueError(
            f"opset must be between {MIN_OPSET} and {newest} (the installed onnx's newest), got {opset}"
        )
    wrapper = _Outputs(model, names).eval()
    # Once eagerly first: an example the model cannot take fails here with the model's own one-line
    # error, not the exporter's page of trace.
    with torch.no_grad():
        wrapper(example)
    with _quiet_exporter_logs(), warnings.catch_warnings():
        # The transformer keeps `last_params` for regularisers; export warns that it is not a
        # buffer, which is harmless for inference.
        warnings.filterwarnings("ignore", message=".*last_params was assigned during export")
        # torch 2.13's exporter trips its own deprecation of LeafSpec; nothing a user can act on.
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
        )
        # Built in memory (f=None) and written only once its opset is right, so a failed export
        # leaves whatever file was at `path` untouched.
        program = torch.onnx.export(
            wrapper,
            (example,),
            None,
            input_names=["images"],
            output_names=list(names),
            opset_version=opset,
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),  # any batch size
            dynamo=True,  # the TorchScript exporter cannot trace the TPS lattice checks
            verbose=False,
        )
    if program is None:  # never with f=None and dynamo=True; a torch that changed that is named
        raise RuntimeError("torch.onnx.export returned no ONNX program; this torch is not supported")
    proto = program.model_proto
    # torch exports at its own opset, then converts; where it cannot convert it logs the failure and
    # keeps its own, so the graph's opset is checked rather than assumed.
    written = _default_opset(proto)
    if written != opset:
        raise ValueError(
            f"torch could not convert the graph to opset {opset} (it exported its own, {written}); "
            f"ask for {written} or newer"
        )
    if proto.ByteSize() >= _PROTOBUF_LIMIT:
        raise ValueError(
            f"the ONNX graph is {proto.ByteSize() / 2**30:.1f} GiB, over protobuf's 2 GiB for one file; "
            "export it with torch.onnx.export(..., external_data=True)"
        )
    data = proto.SerializeToString()
    return atomic_write(path, lambda handle: handle.write(data))


class _DropAnnouncements(logging.Filter):
    """Drops the exporter's records that say nothing a user can act on; lets the rest through."""

    def __init__(self, *, below: int = logging.NOTSET, starts: tuple[str, ...] = ()):
        super().__init__()
        self.below = below
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.below:
            return False
        return not (self.starts and str(record.msg).startswith(self.starts))


# Without torchvision the exporter warns once per torchvision operator it skips; below opset 18 the
# exporter and onnxscript announce the version conversion, whose outcome export_onnx checks itself
# (and raises on). Only these records are dropped: a node the converter skips (onnxscript's
# `_version_converter` child logger) and any other warning still reach the user.
_EXPORTER_FILTERS = {
    "torch.onnx._internal.exporter._registration": _DropAnnouncements(below=logging.ERROR),
    "torch.onnx._internal.exporter._compat": _DropAnnouncements(
        starts=("Setting ONNX exporter to use operator set",)
    ),
    "onnxscript.version_converter": _DropAnnouncements(
        starts=("The model version conversion is not supported by the onnxscript version converter",)
    ),
}


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Attach :data:`_EXPORTER_FILTERS` to their loggers for the block, then detach them."""
    for name, log_filter in _EXPORTER_FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)
    try:
        yield
    finally:
        for name, log_filter in _EXPORTER_FILTERS.items():
            logging.getLogger(name).removeFilter(log_filter)


# One serialised protobuf message holds at most 2 GiB; the library's models are a few MB.
_PROTOBUF_LIMIT = 2**31


def _default_opset(proto: onnx.ModelProto) -> int | None:
    """The opset of the default ONNX domain that the model ``proto`` imports."""
    return next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None)


def onnx_differences(model: nn.Module, path: str | Path, inputs: Tensor) -> dict[str, float]:
    """Largest |torch - onnxruntime| of each output of the file, for ``inputs`` (Tensor[N, C, H, W]).

    The file's output names (:data:`OUTPUTS`) say what torch computes for comparison; the model is
    left in the mode it came in.

    Raises:
        ValueError: ``inputs`` hold no image.
        MissingDependencyError: onnxruntime is not installed.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    inputs = check_tensor(inputs, "inputs")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must hold at least one image, got shape {list(inputs.shape)}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    expected = reference_outputs(model, inputs, names)
    got = session.run(names, {"images": inputs.detach().cpu().numpy()})
    return {name: float(np.abs(value - expected[name].numpy()).max()) for name, value in zip(names, got)}


def onnx_max_abs_diff(model: nn.Module, path: str | Path, inputs: Tensor) -> float:
    """Largest |torch - onnxruntime| over all outputs of the file for ``inputs`` (Tensor[N, C, H, W]).

    Raises:
        MissingDependencyError: onnxruntime is not installed.
    """
    return max(onnx_differences(model, path, inputs).values())
