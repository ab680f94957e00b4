"""Bad input gets a ValueError / TypeError that names the argument, what was expected and what came."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pytest
import torch

import stnkit
from stnkit import geometry
from stnkit.geometry import BACKENDS, tps_transform_points
from stnkit.geometry.fixed_point import sample_fixed_point_reference

IMAGE = torch.rand(2, 1, 8, 8)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            torch.zeros(2, 5),
            r"params for transform 'affine' must have shape \(N, 6\) or \(N, 2, 3\), got \[2, 5\]",
        ),
        (torch.zeros(6), r"must have shape \(N, 6\).*got \[6\]"),
        (torch.zeros(2, 3, 2), r"got \[2, 3, 2\]"),
    ],
)
def test_wrong_params_shape(params: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stnkit.warp(IMAGE, params)


def test_batch_mismatch() -> None:
    with pytest.raises(ValueError, match="batch sizes differ: input has 2, params has 3"):
        stnkit.warp(IMAGE, stnkit.identity_params("affine", 3))
    with pytest.raises(ValueError, match="batch sizes differ"):
        stnkit.sample(IMAGE, torch.zeros(3, 4, 4, 2))
    with pytest.raises(ValueError, match="batch sizes differ: theta has 2, size has 3"):
        stnkit.affine_grid(torch.zeros(2, 2, 3), (3, 1, 4, 4))


def test_integer_images_are_refused_with_a_hint() -> None:
    with pytest.raises(
        TypeError, match=r"input must have a floating-point dtype, got torch.uint8.*\.float\(\) / 255"
    ):
        stnkit.warp(IMAGE.to(torch.uint8), stnkit.identity_params("affine", 2))
    with pytest.raises(TypeError, match="params must have a floating-point dtype, got torch.int64"):
        stnkit.warp(IMAGE, torch.zeros(2, 6, dtype=torch.int64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_params(bad: float) -> None:
    params = stnkit.identity_params("affine", 2)
    params[1, 2] = bad
    with pytest.raises(stnkit.NonFiniteError, match=r"params must be finite, got 1 non-finite value"):
        stnkit.warp(IMAGE, params)
    grid = torch.zeros(2, 4, 4, 2)
    grid[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="grid must be finite"):
        stnkit.sample(IMAGE, grid)
    theta = torch.eye(2, 3).expand(2, 2, 3).clone()
    theta[0, 0, 0] = bad
    with pytest.raises(ValueError, match="theta must be finite"):
        stnkit.affine_grid(theta, (2, 1, 4, 4))


def test_a_homography_whose_last_entry_is_zero_is_refused_by_name() -> None:
    matrices = torch.eye(3).repeat(3, 1, 1)
    matrices[1, 2, 2] = matrices[2, 2, 2] = 0.0  # finite, but no (N, 8) form holds it
    with pytest.raises(ValueError, match=r"entry \[2, 2\] is 1; it is 0 in 2 of them \(first: index 1\)"):
        stnkit.warp(torch.rand(3, 1, 4, 4), matrices, transform="projective")
    scaled = torch.eye(3).repeat(3, 1, 1) * 2.0  # any other scale is divided out: the identity
    image = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(stnkit.warp(image, scaled, transform="projective"), image)


def test_unknown_names() -> None:
    params = stnkit.identity_params("affine", 2)
    with pytest.raises(ValueError, match=r"transform must be one of \['translation'.*got 'rotation'"):
        stnkit.warp(IMAGE, params, transform="rotation")
    with pytest.raises(
        ValueError, match=r"mode must be one of \['bilinear', 'nearest', 'bicubic'\], got 'linear'"
    ):
        stnkit.warp(IMAGE, params, mode="linear")
    with pytest.raises(ValueError, match=r"padding_mode must be one of .*got 'wrap'"):
        stnkit.warp(IMAGE, params, padding_mode="wrap")
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'cuda'"):
        stnkit.sample(IMAGE, torch.zeros(2, 4, 4, 2), backend="cuda")
    # The reference sampler names a bad option too (it was a KeyError from its table of kernels).
    with pytest.raises(ValueError, match=r"mode must be one of .*got 'linear'"):
        geometry.sample_reference(IMAGE, _GRID, mode="linear")
    with pytest.raises(ValueError, match=r"padding_mode must be one of .*got 'wrap'"):
        geometry.sample_reference(IMAGE, _GRID, padding_mode="wrap")


def test_wrong_input_rank() -> None:
    with pytest.raises(
        ValueError, match=r"input for transform 'affine' must be \(N, C, H, W\), got \[1, 8, 8\]"
    ):
        stnkit.warp(torch.rand(1, 8, 8), stnkit.identity_params("affine", 1))
    with pytest.raises(ValueError, match=r"input for transform 'affine3d' must be \(N, C, D, H, W\)"):
        stnkit.warp(IMAGE, stnkit.identity_params("affine3d", 2), transform="affine3d")
    for sample in (stnkit.sample, geometry.sample_reference):  # the reference checks as sample does
        with pytest.raises(ValueError, match=r"grid must have shape \(N, H_out, W_out, 2\)"):
            sample(IMAGE, torch.zeros(2, 4, 4, 3))
        with pytest.raises(TypeError, match="input must have a floating-point dtype"):
            sample(IMAGE.to(torch.uint8), torch.zeros(2, 4, 4, 2))


def test_bicubic_volume_and_dtype_mismatch() -> None:
    with pytest.raises(ValueError, match="bicubic"):
        stnkit.sample(torch.rand(1, 1, 3, 3, 3), torch.zeros(1, 2, 2, 2, 3), mode="bicubic")
    with pytest.raises(TypeError, match="grid dtype must match input dtype torch.float32, got torch.float64"):
        stnkit.sample(IMAGE, torch.zeros(2, 4, 4, 2, dtype=torch.float64))


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="out_size must be positive"):
        stnkit.warp(IMAGE, stnkit.identity_params("affine", 2), out_size=(0, 4))
    with pytest.raises(ValueError, match="out_size must have 2 entries"):
        stnkit.warp(IMAGE, stnkit.identity_params("affine", 2), out_size=(4, 4, 4))
    with pytest.raises(ValueError, match=r"size must be \(N, C, H, W\)"):
        stnkit.affine_grid(torch.zeros(2, 2, 3), (2, 4, 4))
    with pytest.raises(TypeError, match="theta must be a torch.Tensor, got list"):
        stnkit.affine_grid([[1, 0, 0], [0, 1, 0]], (1, 1, 4, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"control_points must have shape \(N, K, 2\)"):
        stnkit.tps_grid(torch.zeros(1, 16, 3), (1, 1, 4, 4))
    with pytest.raises(ValueError, match="perfect square"):
        stnkit.tps_grid(torch.zeros(1, 15, 2), (1, 1, 4, 4))


# --- boolean options take a bool, not whatever is truthy ----------------------------------------------
#
# Every public function (and method) with a bool option, called with valid other arguments: flag -> result.
# The other arguments are chosen so that True and False give different results.

_GENERATOR = torch.Generator().manual_seed(0)
_ZOOM = torch.tensor([[0.5, 0.1, 0.0, -0.2, 0.6, 0.1]]).repeat(2, 1)  # affine (N, 6), not the identity
_GRID = torch.rand(2, 3, 5, 2, generator=_GENERATOR) * 2.4 - 1.2  # (N, H_out, W_out, 2), some outside
_PIXEL_MATRIX = torch.tensor([[1.2, 0.1, 2.0], [0.0, 0.9, -1.0]], dtype=torch.float64)
_BYTES = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8, generator=_GENERATOR)

FlagCall = Callable[[object], torch.Tensor]
FLAG_CALLS: list[tuple[str, str, str, FlagCall]] = [
    # (qualified name, option, id, call)
    ("warp", "align_corners", "fast", lambda flag: stnkit.warp(IMAGE, _ZOOM, align_corners=flag)),
    (
        "warp",
        "align_corners",
        "reference",
        lambda flag: stnkit.warp(IMAGE, _ZOOM, align_corners=flag, backend="reference"),
    ),
    (
        "warp",
        "align_corners",
        "tps",
        lambda flag: stnkit.warp(
            IMAGE, 0.9 * stnkit.identity_params("tps", 2), transform="tps", align_corners=flag
        ),
    ),
    ("sample", "align_corners", "", lambda flag: stnkit.sample(IMAGE, _GRID, align_corners=flag)),
    (
        "sample_reference",
        "align_corners",
        "",
        lambda flag: geometry.sample_reference(IMAGE, _GRID, align_corners=flag),
    ),
    (
        "affine_grid",
        "align_corners",
        "",
        lambda flag: stnkit.affine_grid(_ZOOM.view(2, 2, 3), (2, 1, 4, 4), align_corners=flag),
    ),
    (
        "projective_grid",
        "align_corners",
        "",
        lambda flag: stnkit.projective_grid(torch.eye(3).repeat(2, 1, 1), (2, 1, 4, 4), align_corners=flag),
    ),
    (
        "tps_grid",
        "align_corners",
        "",
        lambda flag: stnkit.tps_grid(stnkit.tps_lattice(16)[None], (1, 1, 4, 4), align_corners=flag),
    ),
    (
        "tps_grid_matrix",
        "align_corners",
        "",
        lambda flag: geometry.tps_grid_matrix(16, (4, 4), align_corners=flag),
    ),
    (
        "normalized_coordinates",
        "align_corners",
        "",
        lambda flag: geometry.normalized_coordinates(4, align_corners=flag, dtype=torch.float64),
    ),
    (
        "Transform.grid",
        "align_corners",
        "",
        lambda flag: stnkit.get_transform("similarity").grid(
            torch.tensor([[0.8, 0.1, 0.0, 0.2]]), (1, 1, 4, 4), align_corners=flag
        ),
    ),
    (
        "pixel_to_normalized",
        "align_corners",
        "",
        lambda flag: stnkit.pixel_to_normalized(_PIXEL_MATRIX, input_size=(4, 6), align_corners=flag),
    ),
    (
        "pixel_to_normalized",
        "inverse_map",
        "",
        lambda flag: stnkit.pixel_to_normalized(_PIXEL_MATRIX, input_size=(4, 6), inverse_map=flag),
    ),
    (
        "normalized_to_pixel",
        "align_corners",
        "",
        lambda flag: stnkit.normalized_to_pixel(_PIXEL_MATRIX, input_size=(4, 6), align_corners=flag),
    ),
    (
        "normalized_to_pixel",
        "inverse_map",
        "",
        lambda flag: stnkit.normalized_to_pixel(_PIXEL_MATRIX, input_size=(4, 6), inverse_map=flag),
    ),
    (
        "sample_fixed_point",
        "align_corners",
        "",
        lambda flag: geometry.sample_fixed_point(_BYTES, _GRID.double(), align_corners=flag),
    ),
    (
        "sample_fixed_point_reference",
        "align_corners",
        "",
        lambda flag: sample_fixed_point_reference(_BYTES, _GRID.double(), align_corners=flag),
    ),
]
FLAG_PARAMS = [
    pytest.param(option, call, id="-".join(filter(None, (name, option, variant))))
    for name, option, variant, call in FLAG_CALLS
]
# (bad value, how the message shows it)
NOT_BOOLS = [
    ("yes", "'yes' (str)"),
    (None, "None (NoneType)"),
    (1, "1 (int)"),
    (0.0, "0.0 (float)"),
    (torch.tensor(True), "tensor(True) (Tensor)"),
]


def _boolean_options(function: Callable[..., object]) -> set[str]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.annotation in ("bool", bool)}


def test_the_table_covers_every_boolean_option_of_the_public_geometry_api() -> None:
    public = set()
    for name in geometry.__all__:
        value = getattr(geometry, name)
        if inspect.isfunction(value):
            public |= {(name, option) for option in _boolean_options(value)}
        elif inspect.isclass(value):
            for method_name, method in vars(value).items():
                if inspect.isfunction(method) and not method_name.startswith("_"):
                    public |= {(f"{name}.{method_name}", option) for option in _boolean_options(method)}
    assert ("warp", "align_corners") in public and ("Transform.grid", "align_corners") in public
    missing = public - {(name, option) for name, option, _, _ in FLAG_CALLS}
    assert not missing, f"boolean options without a row in FLAG_CALLS: {sorted(missing)}"


@pytest.mark.parametrize(("bad", "shown"), NOT_BOOLS, ids=["str", "None", "int", "float", "tensor"])
@pytest.mark.parametrize(("option", "call"), FLAG_PARAMS)
def test_a_boolean_option_refuses_what_is_not_a_bool(
    option: str, call: FlagCall, bad: object, shown: str
) -> None:
    with pytest.raises(TypeError) as raised:
        call(bad)
    assert str(raised.value) == f"{option} must be a bool (True or False), got {shown}"


@pytest.mark.parametrize(("option", "call"), FLAG_PARAMS)
def test_a_boolean_option_takes_python_and_numpy_bools_alike(option: str, call: FlagCall) -> None:
    on, off = call(True), call(False)
    assert not torch.equal(on, off), f"{option} makes no difference to this call: the table misses the point"
    assert torch.equal(call(np.True_), on)
    assert torch.equal(call(np.False_), off)


def test_the_message_stays_on_one_line_for_a_tensor() -> None:
    with pytest.raises(TypeError) as raised:
        stnkit.warp(IMAGE, _ZOOM, align_corners=torch.ones(10, 10, dtype=torch.bool))
    message = str(raised.value)
    assert "\n" not in message and len(message) < 140
    assert message.startswith("align_corners must be a bool (True or False), got tensor([[True, True,")
    assert message.endswith("... (Tensor)")


# --- no value checks off the CPU: they would synchronise with the device on every call ---------------
#
# A meta tensor has a device but no values: bool(), .item() or .all() on it raise. So warp, sample and the
# grid functions running on meta tensors proves they read no values back, as on CUDA they must not.


def test_a_value_check_on_a_meta_tensor_would_raise() -> None:
    with pytest.raises((RuntimeError, NotImplementedError)):
        bool(torch.isfinite(torch.zeros(2, device="meta")).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transform", stnkit.list_transforms())
def test_warp_reads_no_values_off_the_cpu(transform: str, backend: str) -> None:
    spec = stnkit.get_transform(transform)
    image = torch.rand(2, 3, *([6] * spec.spatial_dims), device="meta", requires_grad=True)
    params = stnkit.identity_params(transform, 2).to("meta").requires_grad_(True)
    for mode in ["bilinear", "nearest"]:
        out = stnkit.warp(image, params, transform=transform, out_size=5, mode=mode, backend=backend)
        assert out.shape == (2, 3, *([5] * spec.spatial_dims)) and out.device.type == "meta"
        grads = torch.autograd.grad(out.sum(), (image, params))
        assert grads[1].shape == params.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_and_grids_read_no_values_off_the_cpu(backend: str) -> None:
    image = torch.rand(2, 1, 6, 6, device="meta")
    theta = torch.rand(2, 2, 3, device="meta")
    grid = stnkit.affine_grid(theta, (2, 1, 4, 4))
    assert stnkit.sample(image, grid, backend=backend).shape == (2, 1, 4, 4)
    assert stnkit.projective_grid(torch.rand(2, 3, 3, device="meta"), (2, 1, 4, 4)).device.type == "meta"
    control_points = torch.rand(2, 16, 2, device="meta")
    assert stnkit.tps_grid(control_points, (2, 1, 4, 4)).device.type == "meta"
    points = torch.rand(2, 5, 2, device="meta")
    assert tps_transform_points(control_points, points).shape == (2, 5, 2)


def test_tps_lattice_refuses_an_integer_dtype() -> None:
    with pytest.raises(TypeError, match="dtype must be a floating-point dtype, got torch.int64"):
        geometry.tps_lattice(16, dtype=torch.int64)
    assert geometry.tps_lattice(16, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("batch_size", [-1, 2.5, True, "2"])
def test_identity_params_takes_a_batch_size_of_zero_or_more(batch_size: object) -> None:
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 0, got"):
        stnkit.identity_params("affine", batch_size)  # type: ignore[arg-type]
    assert stnkit.identity_params("affine", 0).shape == (0, 6)
    with pytest.raises(TypeError, match="dtype must be a floating-point dtype, got torch.int64"):
        stnkit.identity_params("affine", 2, dtype=torch.int64)


@pytest.mark.parametrize("size", [(2, 3, 4.5, 4), None, "abcd", (2, True, 4, 4)])
def test_a_grid_size_that_is_not_ints_is_refused_not_truncated(size: object) -> None:
    params = stnkit.identity_params("affine", 2)
    with pytest.raises(ValueError, match=r"size must be \(N, C, H, W\), a sequence of ints, got"):
        stnkit.get_transform("affine").grid(params, size)  # type: ignore[arg-type]
    assert stnkit.get_transform("affine").grid(params, torch.Size([2, 3, 4, 4])).shape == (2, 4, 4, 2)
