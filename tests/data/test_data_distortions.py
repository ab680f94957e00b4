from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch

import stnkit
from stnkit.data import DISTORTIONS, distort, get_distortion, load_mnist, make_loader
from stnkit.data import distortions as D

SHAPES = {
    "r": (1, 28, 28),
    "rts": (1, 42, 42),
    "p": (1, 28, 28),
    "e": (1, 28, 28),
    "tc": (1, 60, 60),
    "mnist-add": (2, 42, 42),
}

# sha256 of the parameters of the first 64 images of each canonical test split (seed 0): the random
# draws, pinned. The pixels of the whole sets are pinned in tests/data/test_data_canonical.py.
PINNED_PARAMS = {
    "r": "1443a443feb42e53780c1d44ea8543370cf694ea729c05600fc77c9f2d262d2e",
    "rts": "8fb072e18f12c8dc147ae168db3864a47801d91e3f4140fad5615a236b97ef1e",
    "p": "6227e9aee03bcc57e8addddc89419c46b3d97cbf2f31151792c209513954d415",
    "e": "22530e94f92e09b27924104b18a16f344d03717e2dd55665f4f48afdfb5d9d85",
    "tc": "abad2d766acc7d035f713dc7684900fee213c25f72d71a5a1eab0870d611983e",
    "mnist-add": "f8f3773d192f6c689b8eecc1652411b29e4a782a703b085dceb6a31919e6c84b",
}


def digits(n: int = 8) -> torch.Tensor:
    """A bright square in the middle of each 28x28 image (no real data needed)."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 10:18, 12:16] = 255
    return images


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(SHAPES))
def test_shapes_ranges_and_determinism(name: str) -> None:
    images = distort(name, digits(), generator=gen(1))
    assert images.shape == (8, *SHAPES[name]) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.5
    assert torch.equal(images, distort(name, digits(), generator=gen(1)))
    assert not torch.equal(images, distort(name, digits(), generator=gen(2)))
    spec = get_distortion(name)
    assert (spec.out_channels, *spec.out_size) == SHAPES[name]


def test_unknown_distortion_lists_valid() -> None:
    with pytest.raises(ValueError, match=r"valid: \['e', 'mnist-add', 'p', 'r', 'rts', 'tc'\]"):
        get_distortion("rst")
    assert set(DISTORTIONS) == set(SHAPES)


def test_similarity_theta_matches_pixel_geometry() -> None:
    # A single bright pixel moved by (+5, -3) px in a 42x42 canvas, no rotation, scale 1.
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 14, 14] = 1.0
    theta = D.similarity_theta(
        torch.zeros(1), torch.ones(1), torch.tensor([[5.0, -3.0]]), in_size=28, out_size=42
    )
    out = stnkit.warp(image, theta, out_size=(42, 42))
    # Pixel (14, 14) sits 0.5 px right/below the 28x28 centre -> 21 + 0.5 in the canvas.
    assert out[0, 0].argmax().item() == (21 - 3) * 42 + (21 + 5)
    assert out.max().item() == pytest.approx(1.0, abs=1e-5)


def random_digits(n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=gen(seed))


def as_unit_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


def test_rotation_by_90_degrees_is_a_transpose() -> None:
    image = random_digits()
    out = D.apply_rotation(image, {"angle": torch.tensor([math.pi / 2])})
    expected = torch.rot90(image, k=-1, dims=(1, 2))  # +90 deg turns x towards y (clockwise)
    assert torch.equal(out[0], as_unit_float(expected))  # whole pixels: copied exactly


def test_float_digits_are_rounded_to_8_bits_first() -> None:
    image = torch.rand(2, 28, 28, generator=gen())
    out = D.apply_rotation(image, {"angle": torch.zeros(2)})
    assert torch.equal(out[:, 0], (image * 255).round() / 255)
    with pytest.raises(TypeError, match="digits must be uint8, or floating point"):
        D.apply_rotation(image.long(), {"angle": torch.zeros(2)})


@pytest.mark.parametrize("name", list(SHAPES))
def test_images_are_multiples_of_one_255th(name: str) -> None:
    images = distort(name, random_digits(4), generator=gen(3))
    assert torch.equal(images, (images * 255).round() / 255)


def test_rts_matches_torch_sampler_to_rounding() -> None:
    # The fixed-point path equals the float pipeline (affine_grid + grid_sample on 8-bit values) to
    # within the rounding of positions to 1/256 px and of values to 8 bits.
    digits_ = random_digits(8, seed=5)
    params = D.sample_rts_params(8, gen(6))
    theta = D.similarity_theta(
        params["angle"].double(), params["scale"].double(), params["shift"].double(), in_size=28, out_size=42
    )
    grid = torch.nn.functional.affine_grid(theta, [8, 1, 42, 42], align_corners=False)
    expected = torch.nn.functional.grid_sample(digits_[:, None].double(), grid, align_corners=False)
    out = D.apply_rts(digits_, params) * 255
    # 1/512 px of position error moves a value by at most 255/512 per axis; plus 1/2 from rounding.
    assert (out.double() - expected).abs().max() <= 0.5 + 2 * 255 / 512


def test_rts_parameter_ranges() -> None:
    params = D.sample_rts_params(20000, gen())
    assert params["angle"].abs().max() <= math.radians(45)
    assert params["scale"].min() >= 0.7 and params["scale"].max() <= 1.2
    room = (42 - 28 * params["scale"]) / 2
    assert (params["shift"].abs() <= room[:, None] + 1e-5).all()


def test_projective_identity_and_horizon() -> None:
    corners = D._CORNERS[None].clone()
    image = random_digits()
    assert torch.equal(D.apply_projective(image, {"corners": corners})[:, 0], as_unit_float(image))
    params = D.sample_projective_params(20000, gen())
    assert (D._min_w(params["corners"]) >= D.P_MIN_W).all()  # no canvas point through infinity
    offset = params["corners"] - D._CORNERS  # scale in [0.75, 1] plus truncated noise
    assert offset.abs().max() <= 0.25 + 2 * D.P_SIGMA + 1e-6


def test_elastic_zero_displacement_is_identity_and_sigma() -> None:
    image = random_digits()
    out = D.apply_elastic(image, {"displacement": torch.zeros(1, 16, 2)})
    assert torch.equal(out[:, 0], as_unit_float(image))
    displacement = D.sample_elastic_params(4000, gen())["displacement"] * 28 / 2  # to pixels
    assert displacement.std().item() == pytest.approx(1.5, rel=0.03)


def test_translated_cluttered_places_digit_exactly() -> None:
    source = digits(1)
    params = D.sample_translated_cluttered_params(1, gen(), num_sources=1)
    params["source"].zero_()
    params["place"].fill_(0)  # clutter in the top-left corner only
    params["shift"] = torch.tensor([[16, -16]])  # digit in the top-right corner
    out = D.apply_translated_cluttered(source, params, source)
    digit_box = out[0, 0, :28, 32:]
    assert torch.equal(digit_box, as_unit_float(source[0]))
    assert out[0, 0, 28:, :].sum() == 0 and out[0, 0, 6:, :32].sum() == 0


def test_clutter_counts_and_size() -> None:
    sources = torch.full((3, 28, 28), 255, dtype=torch.uint8)
    empty = torch.zeros(4, 28, 28, dtype=torch.uint8)
    params = D.sample_translated_cluttered_params(4, gen(), num_sources=3)
    params["place"] = torch.tensor([0, 10, 20, 30, 40, 50]).repeat(4, 2, 1).transpose(1, 2)
    out = D.apply_translated_cluttered(empty, params, sources)
    # Six disjoint 6x6 white patches on the diagonal and nothing else.
    assert (out > 0).sum(dim=(1, 2, 3)).tolist() == [6 * 36] * 4


def test_mnist_add_partner_channel() -> None:
    first = digits(2)
    sources = torch.zeros(5, 28, 28, dtype=torch.uint8)  # partners are blank
    out = distort("mnist-add", first, generator=gen(), sources=sources)
    assert out[:, 0].sum() > 0 and out[:, 1].sum() == 0


@pytest.mark.parametrize("name", list(PINNED_PARAMS))
def test_pinned_test_set_parameters(shared_data: Path, name: str) -> None:
    params = make_loader(
        name, split="test", batch_size=64, limit=64, seed=0, root=shared_data
    ).dataset.params()
    raw = b"".join(params[k][:64].contiguous().numpy().tobytes() for k in sorted(params))
    assert hashlib.sha256(raw).hexdigest() == PINNED_PARAMS[name]


def test_test_set_independent_of_batching_and_limit(shared_data: Path) -> None:
    small = make_loader("rts", split="test", batch_size=64, limit=64)
    images, _ = next(iter(small))
    other = make_loader("rts", split="test", batch_size=24, limit=100)
    pieces = [batch for batch, _ in other]
    torch.testing.assert_close(torch.cat(pieces)[:64], images, atol=0, rtol=0)


def test_real_digits_all_variants(shared_data: Path) -> None:
    mnist = load_mnist(shared_data, split="test")
    for name in SHAPES:
        out = distort(name, mnist.images[:16], generator=gen(), sources=mnist.images)
        # Ink is preserved roughly (R/P/E/TC in frame); RTS shrinks or grows it with scale^2.
        ratio = out[:, :1].sum() / (mnist.images[:16].float().sum() / 255)
        assert 0.5 < ratio.item() < 2.0, name
