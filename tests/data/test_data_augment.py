"""Training augmentation: spec parsing, the identity, measured ranges, determinism, the loader's use."""

from __future__ import annotations

import math

import pytest
import torch

from stnkit.data import (
    AUGMENT_PRESETS,
    AugmentSpec,
    BatchDataset,
    apply_augment,
    augment_batch,
    augment_matrices,
    make_loader,
    parse_augment,
    sample_augment_params,
    tta_views,
)
from stnkit.data.augment import TtaView

FULL = "rotate=15,scale=0.1,shift=2,perspective=0.05,brightness=0.2,contrast=0.2"


def _images(n: int, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _identity_params(n: int) -> dict[str, torch.Tensor]:
    zeros = torch.zeros(n, dtype=torch.float64)
    return {
        "angle": zeros,
        "scale": zeros + 1.0,
        "shift": torch.zeros(n, 2, dtype=torch.float64),
        "corners": torch.zeros(n, 4, 2, dtype=torch.float64),
        "contrast": zeros + 1.0,
        "brightness": zeros + 1.0,
    }


# --- the spec and its string form ---------------------------------------------------------------


def test_spec_string_round_trips() -> None:
    spec = parse_augment(FULL)
    assert spec == AugmentSpec(rotate=15, scale=0.1, shift=2, perspective=0.05, brightness=0.2, contrast=0.2)
    assert parse_augment(spec.to_string()) == spec
    assert parse_augment(" rotate = 5 , padding = zeros ").to_string() == "rotate=5,padding=zeros"
    assert parse_augment("none") == AugmentSpec() and AugmentSpec().to_string() == "none"


def test_gtsrb_preset_is_sermanet_and_lecuns_jitter() -> None:
    spec = parse_augment("GTSRB")
    assert spec is AUGMENT_PRESETS["gtsrb"]
    assert (spec.rotate, spec.scale, spec.shift) == (15.0, 0.1, 2.0)
    assert 0 < spec.brightness <= 0.3 and 0 < spec.contrast <= 0.3 and spec.padding == "border"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rotate=15,tilt=3", "unknown key 'tilt'"),
        ("rotate=-1", "rotate must be >= 0, got -1"),
        ("shift=two", "shift must be a number, got 'two'"),
        ("scale=nan", "scale must be a finite number"),
        ("scale=1", "scale must be < 1, got 1"),
        ("perspective=0.3", "perspective must be < 0.25"),
        ("brightness=1.5", "brightness must be <= 1"),
        ("rotate=5,rotate=6", "key 'rotate' given twice"),
        ("rotate=5,", "expected key=value, got ''"),
        ("padding=reflection", "padding must be one of ['border', 'zeros']"),
        ("imagenet", "unknown augment preset 'imagenet'"),
    ],
)
def test_bad_spec_strings_get_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_augment(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- the identity --------------------------------------------------------------------------------


def test_zero_spec_returns_the_input_bit_for_bit() -> None:
    images = torch.rand(5, 3, 32, 32)
    out = augment_batch(images, AugmentSpec(), _generator())
    assert out is images
    assert torch.equal(apply_augment(images, {}, AugmentSpec()), images)
    # uint8 input: the loaders' conversion, exactly.
    pixels = _images(5)
    assert torch.equal(augment_batch(pixels, AugmentSpec(), _generator()), pixels.float() / 255.0)


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("size", [(32, 32), (28, 20)])
def test_identity_parameters_give_the_identity_matrix_and_the_input(padding: str, size: tuple) -> None:
    params = _identity_params(4)
    matrices = augment_matrices(params, size)
    assert torch.allclose(matrices, torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-12)
    pixels = torch.randint(0, 256, (4, 3, *size), generator=_generator(1)).to(torch.uint8)
    spec = parse_augment(f"rotate=10,scale=0.1,perspective=0.1,brightness=0.5,contrast=0.5,padding={padding}")
    # Geometric and photometric code paths both run, with neutral parameters.
    assert torch.equal(apply_augment(pixels, params, spec), pixels.float() / 255.0)


# --- ranges, measured ------------------------------------------------------------------------------


def test_sampled_parameters_fill_their_ranges() -> None:
    spec = parse_augment(FULL)
    params = sample_augment_params(spec, 4000, _generator())
    for key, low, high in [
        ("angle", -15, 15), ("scale", 0.9, 1.1), ("shift", -2, 2), ("corners", -0.05, 0.05),
        ("brightness", 0.8, 1.2), ("contrast", 0.8, 1.2),
    ]:  # fmt: skip
        values = params[key]
        assert values.min() >= low and values.max() <= high, key
        span = high - low
        assert values.min() < low + 0.01 * span and values.max() > high - 0.01 * span, key


def _blob(size: int = 32) -> torch.Tensor:
    """uint8 (1, 1, size, size): a Gaussian spot at the centre, wide enough that the interpolation's
    blur (at most 1/4 px^2 of variance per axis) hardly changes its spread."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    spot = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * 4.0**2))
    return (spot * 255).round().to(torch.uint8)[None, None]


def _centre_and_spread(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) centroid and RMS radius of a (H, W) image, in pixels."""
    h, w = image.shape
    weights = image.double() / image.double().sum()
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    cx, cy = (weights * xs).sum(), (weights * ys).sum()
    spread = (weights * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum().sqrt()
    return torch.stack((cx, cy)), spread


def test_applied_shift_and_scale_are_the_drawn_ones() -> None:
    spec = parse_augment("shift=2,scale=0.1,padding=zeros")
    blob = _blob().expand(64, 1, 32, 32)
    params = sample_augment_params(spec, 64, _generator(3))
    out = apply_augment(blob, params, spec)
    centre, spread = _centre_and_spread(blob[0, 0])
    for i in range(64):
        moved, grown = _centre_and_spread(out[i, 0])
        shift = moved - centre
        assert torch.allclose(shift, params["shift"][i], atol=0.03), (shift, params["shift"][i])
        assert shift.abs().max() <= 2.03
        assert abs(float(grown / spread) - float(params["scale"][i])) < 0.02
        assert 0.88 < float(grown / spread) < 1.12


def test_applied_rotation_is_the_drawn_one() -> None:
    # A bar along x: its principal axis turns by the drawn angle (positive: towards +y).
    spec = parse_augment("rotate=15,padding=zeros")
    bar = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    bar[0, 0, 15:17, 6:26] = 255
    params = sample_augment_params(spec, 32, _generator(4))
    out = apply_augment(bar.expand(32, 1, 32, 32), params, spec)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for i in range(32):
        w = out[i, 0].double() / out[i, 0].sum()
        cx, cy = (w * xs).sum(), (w * ys).sum()
        cxx, cyy, cxy = (
            (w * (xs - cx) ** 2).sum(),
            (w * (ys - cy) ** 2).sum(),
            (w * (xs - cx) * (ys - cy)).sum(),
        )
        angle = math.degrees(0.5 * math.atan2(2 * float(cxy), float(cxx - cyy)))
        assert abs(angle - float(params["angle"][i])) < 0.5
        assert abs(angle) <= 15.5


def test_applied_brightness_and_contrast_are_the_drawn_ones() -> None:
    spec = parse_augment("brightness=0.3,contrast=0.4")
    halves = torch.full((16, 1, 8, 8), 80, dtype=torch.uint8)
    halves[:, :, :, 4:] = 160  # mean 120, deviations +-40
    params = sample_augment_params(spec, 16, _generator(5))
    out = apply_augment(halves, params, spec)
    mean = out.mean(dim=(1, 2, 3))
    spread = out[:, 0, 0, 4] - out[:, 0, 0, 0]
    b, c = params["brightness"].float(), params["contrast"].float()
    assert torch.allclose(mean, b * 120 / 255, atol=1e-6)
    assert torch.allclose(spread, b * c * 80 / 255, atol=1e-6)
    assert b.min() >= 0.7 and b.max() <= 1.3 and c.min() >= 0.6 and c.max() <= 1.4


def test_images_stay_in_the_unit_range() -> None:
    spec = parse_augment("brightness=1,contrast=1,rotate=30")
    out = augment_batch(_images(64), spec, _generator())
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    assert out.max() == 1 and out.min() == 0  # the extremes do saturate


def test_border_padding_repeats_the_edge_and_zeros_draws_black() -> None:
    white = torch.full((8, 3, 32, 32), 255, dtype=torch.uint8)
    params = sample_augment_params(parse_augment("rotate=30,scale=0.2"), 8, _generator())
    params["scale"] = params["scale"].clamp(max=0.9)  # shrink: the corners sample outside
    border = apply_augment(white, params, parse_augment("rotate=30,scale=0.2"))
    zeros = apply_augment(white, params, parse_augment("rotate=30,scale=0.2,padding=zeros"))
    assert torch.equal(border, torch.ones_like(border))
    assert (zeros[:, :, 0, 0] == 0).all()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("n", [0, 1, 5])
def test_shapes_channels_and_batch_sizes(channels: int, n: int) -> None:
    images = _images(n, channels)
    out = augment_batch(images, parse_augment(FULL), _generator())
    assert out.shape == images.shape and out.dtype == torch.float32
    assert ((out >= 0) & (out <= 1)).all()


def test_float_input_in_the_unit_range_works() -> None:
    pixels = _images(4)
    spec = parse_augment(FULL)
    from_uint8 = augment_batch(pixels, spec, _generator(7))
    from_float = augment_batch(pixels.float() / 255.0, spec, _generator(7))
    assert torch.equal(from_uint8, from_float)


# --- determinism -------------------------------------------------------------------------------------


def test_the_generator_decides_everything() -> None:
    images, spec = _images(8), parse_augment(FULL)
    assert torch.equal(augment_batch(images, spec, _generator(1)), augment_batch(images, spec, _generator(1)))
    assert not torch.equal(
        augment_batch(images, spec, _generator(1)), augment_batch(images, spec, _generator(2))
    )


def test_switching_one_jitter_on_keeps_the_others_draws() -> None:
    a = sample_augment_params(parse_augment("rotate=10"), 6, _generator())
    b = sample_augment_params(parse_augment("rotate=10,brightness=0.3"), 6, _generator())
    assert torch.equal(a["angle"], b["angle"])


def _dataset(augment_spec: AugmentSpec | None, *, batch_size: int = 8, seed: int = 0, **kw) -> BatchDataset:
    return BatchDataset(
        name="gtsrb",
        images=_images(40),
        labels=torch.arange(40) % 43,
        split="train",
        batch_size=batch_size,
        seed=seed,
        shuffle=True,
        augment=augment_spec,
        **kw,
    )


def _epoch(dataset: BatchDataset, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset.set_epoch(epoch)
    batches = [dataset[i] for i in range(len(dataset))]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_loader_jitter_depends_on_seed_epoch_and_image_only() -> None:
    spec = parse_augment(FULL)
    images, labels = _epoch(_dataset(spec), 1)
    again, _ = _epoch(_dataset(spec), 1)
    assert torch.equal(images, again)
    other_batch_size, _ = _epoch(_dataset(spec, batch_size=16), 1)
    assert torch.equal(images, other_batch_size)
    next_epoch, _ = _epoch(_dataset(spec), 2)
    assert not torch.equal(images, next_epoch)
    other_seed, _ = _epoch(_dataset(spec, seed=1), 1)
    assert not torch.equal(images, other_seed)
    plain, plain_labels = _epoch(_dataset(None), 1)
    assert torch.equal(labels, plain_labels)  # labels and order untouched
    assert not torch.equal(images, plain)
    # Two ranks see the same jitter of an image as one process does.
    rank1, _ = _epoch(_dataset(spec, rank=1, world_size=2), 1)
    assert torch.equal(rank1, images[1::2])


def test_loader_jitter_does_not_depend_on_workers() -> None:
    from stnkit.data.loaders import DistortedLoader

    spec = parse_augment(FULL)
    sequential = DistortedLoader(_dataset(spec), num_workers=0, pin_memory=False)
    parallel = DistortedLoader(_dataset(spec), num_workers=2, pin_memory=False)
    for loader in (sequential, parallel):
        loader.set_epoch(3)
    a = torch.cat([images for images, _ in sequential])
    b = torch.cat([images for images, _ in parallel])
    assert torch.equal(a, b)


def test_a_zero_spec_in_the_loader_changes_nothing() -> None:
    plain, _ = _epoch(_dataset(None), 1)
    zero, _ = _epoch(_dataset(AugmentSpec()), 1)
    assert torch.equal(plain, zero)


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_splits_are_never_augmented(split: str) -> None:
    with pytest.raises(ValueError, match="training split only"):
        make_loader("gtsrb", split=split, batch_size=8, val_size=100, augment=parse_augment("gtsrb"))
    with pytest.raises(ValueError, match="training split only"):
        BatchDataset(
            name="gtsrb", images=_images(4), labels=torch.zeros(4, dtype=torch.int64), split=split,
            batch_size=2, augment=parse_augment("gtsrb"),
        )  # fmt: skip
    # An all-zero spec is "no augmentation" and is accepted anywhere.
    BatchDataset(
        name="gtsrb", images=_images(4), labels=torch.zeros(4, dtype=torch.int64), split=split,
        batch_size=2, augment=AugmentSpec(),
    )  # fmt: skip


def test_make_loader_refuses_a_string_spec() -> None:
    with pytest.raises(TypeError, match="AugmentSpec or None, got str"):
        make_loader("gtsrb", split="train", batch_size=8, augment="gtsrb")  # type: ignore[arg-type]


def test_real_gtsrb_training_loader_is_jittered(shared_gtsrb) -> None:
    common = dict(split="train", batch_size=16, root=shared_gtsrb, limit=32)
    plain = next(iter(make_loader("gtsrb", **common)))
    jittered = next(iter(make_loader("gtsrb", augment=parse_augment("gtsrb"), **common)))
    assert torch.equal(plain[1], jittered[1])
    assert jittered[0].shape == plain[0].shape == (16, 3, 32, 32)
    assert not torch.equal(plain[0], jittered[0])
    assert (plain[0] - jittered[0]).abs().mean() < 0.2  # a jitter, not another picture


# --- test-time views -------------------------------------------------------------------------------


def test_tta_views_are_the_identity_then_each_ranges_extremes() -> None:
    views = tta_views("rotate=5,scale=0.05,shift=1")
    assert [view.name for view in views] == [
        "identity",
        "rotate=-5",
        "rotate=+5",
        "scale=0.95",
        "scale=1.05",
        "shift=(-1,0)",
        "shift=(+1,0)",
        "shift=(0,-1)",
        "shift=(0,+1)",
    ]
    assert [view.angle for view in views[1:3]] == [-5.0, 5.0]
    assert [view.scale for view in views[3:5]] == [0.95, 1.05]
    assert views[0].is_identity and not any(view.is_identity for view in views[1:])
    assert [view.name for view in tta_views(AugmentSpec(scale=0.1))] == ["identity", "scale=0.9", "scale=1.1"]


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_identity_view_gives_back_the_input(padding: str) -> None:
    images = _images(3)
    identity = tta_views(f"shift=1,padding={padding}")[0]
    assert torch.equal(identity(images), images.float() / 255)
    assert torch.equal(identity(images.float() / 255), images.float() / 255)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_whole_pixel_shift_views_move_every_pixel_by_one(padding: str) -> None:
    # Special points: a whole-pixel shift samples pixel centres, so the pixels move exactly.
    images = _images(2, size=8)
    _, left, right, up, down = tta_views(f"shift=1,padding={padding}")
    as_uint8 = lambda out: (out * 255).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(as_uint8(right(images))[..., 1:], images[..., :-1])  # content moves right (+x)
    assert torch.equal(as_uint8(left(images))[..., :-1], images[..., 1:])
    assert torch.equal(as_uint8(down(images))[..., 1:, :], images[..., :-1, :])  # +y is down
    assert torch.equal(as_uint8(up(images))[..., :-1, :], images[..., 1:, :])
    # The column that came from outside: the edge repeated, or black.
    edge = images[..., :1] if padding == "border" else torch.zeros_like(images[..., :1])
    assert torch.equal(as_uint8(right(images))[..., :1], edge)


def test_quarter_turn_views_are_exact_rotations() -> None:
    images = _images(2, size=9)
    _, minus, plus = tta_views("rotate=90")
    as_uint8 = lambda out: (out * 255).round().to(torch.uint8)  # noqa: E731
    # Positive angles turn +x towards +y (clockwise on the screen, y down).
    assert torch.equal(as_uint8(plus(images)), torch.rot90(images, -1, dims=(2, 3)))
    assert torch.equal(as_uint8(minus(images)), torch.rot90(images, 1, dims=(2, 3)))


def test_tta_views_warp_as_the_training_jitter_does() -> None:
    images = _images(4)
    view = tta_views("rotate=7")[2]
    params = _identity_params(4)
    params["angle"] = torch.full((4,), 7.0, dtype=torch.float64)
    assert torch.equal(view(images), apply_augment(images, params, parse_augment("rotate=7")))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rotate=5,brightness=0.2", "test-time views take rotate, scale and shift only, got brightness=0.2"),
        ("perspective=0.1", "test-time views take rotate, scale and shift only, got perspective=0.1"),
        ("none", "test-time views need at least one of rotate, scale and shift, got none"),
        ("rotate=500", "augment rotate must be <= 180, got 500"),
    ],
)
def test_bad_tta_specs_get_a_one_line_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        tta_views(spec)
    assert str(info.value) == message


def test_a_view_refuses_images_that_are_not_a_batch() -> None:
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\), got shape \[3, 32, 32\]"):
        tta_views("shift=1")[1](_images(1)[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0}, "view scale must be > 0, got 0"),
        ({"angle": float("nan")}, "view angle must be a finite number, got nan"),
        ({"shift": (1.0, 2.0, 3.0)}, r"view shift must be \(x, y\) pixels, got \(1.0, 2.0, 3.0\)"),
        ({"shift": (1.0, "2")}, "view shift y must be a finite number, got '2'"),
        ({"padding": "reflect"}, r"view padding must be one of \['border', 'zeros'\], got 'reflect'"),
    ],
)
def test_a_bad_view_gets_a_one_line_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TtaView("bad", **kwargs)


def test_a_view_takes_its_shift_as_any_pair() -> None:
    assert TtaView("still", shift=[0, 0]).is_identity
    assert TtaView("moved", shift=[1, 0]).shift == (1.0, 0.0)
    with pytest.raises(TypeError, match="test-time views need an AugmentSpec or its string form, got int"):
        tta_views(5)  # type: ignore[arg-type]
