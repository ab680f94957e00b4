"""On-the-fly training augmentation: a random geometric and photometric jitter per image.

Every image of a batch gets its own parameters:

* one projective warp, sampled once: rotation, isotropic scale, translation in pixels and a
  perspective jitter of the four corners, composed into one input-from-output matrix per image;
* a contrast and a brightness factor.

Randomness and pixels are separate, as in :mod:`stnkit.data.distortions`: :func:`sample_augment_params`
draws the parameters of ``n`` images from a ``torch.Generator`` (all of them, in a fixed order, whatever
the spec, so switching one jitter on does not change the draws of the others), and
:func:`apply_augment` makes the pixels. The training loader draws a whole epoch's parameters at once in
image order, from a generator seeded by ``(seed, dataset, epoch)``: the jitter of image ``j`` depends
only on ``(seed, epoch, j)``, not on batch size, workers or ranks.

The pixels come out the same on every machine but for odds of about one in 1e11 per position (see
:mod:`stnkit.geometry.fixed_point`): positions are computed in float64 and sampled by
:func:`stnkit.geometry.sample_fixed_point` (8-bit images, exact bilinear interpolation), and the
photometric jitter is two elementwise float32 operations with per-image factors computed in float64
(no reductions in float32, whose summation order depends on the CPU).

Geometry is written in centred pixel coordinates (origin at the image centre, y down) and converted to
stnkit's normalised convention (``align_corners=False``). Samples that fall outside the image take the
nearest border pixel (``padding="border"``, the default): a GTSRB sign sits on a background that
continues past the crop, so repeating the edge looks like more background, while zeros draw black
wedges at the corners of every rotated or shrunk image, a cue the test images never show.
``padding="zeros"`` is there for data whose background is black (MNIST).

No flips: mirroring turns some signs into other classes (keep left / keep right, the bends).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor

from stnkit.data.distortions import homography_from_points
from stnkit.data.pixels import to_uint8, to_unit_float
from stnkit.geometry import affine_grid, projective_grid, sample_fixed_point

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentSpec",
    "TtaView",
    "apply_augment",
    "augment_batch",
    "augment_matrices",
    "parse_augment",
    "sample_augment_params",
    "tta_views",
]

Params = dict[str, Tensor]
PADDINGS = ("border", "zeros")

# Columns of the uniform draws of one image, in draw order: angle, scale, shift x, shift y, 8 corner
# coordinates, contrast, brightness.
_NUM_DRAWS = 14


@dataclass(frozen=True)
class AugmentSpec:
    """The ranges of the training jitter; all zero (the default) means no augmentation.

    Each value ``v`` draws uniformly from a symmetric range:

    Attributes:
        rotate: rotation in [-v, v] degrees, at most 180.
        scale: isotropic scale in [1 - v, 1 + v], v < 1.
        shift: translation in [-v, v] pixels, x and y independently.
        perspective: each corner of the frame moved by [-v, v] times the side, x and y
            independently; v < 0.25 (the quadrilateral stays convex).
        brightness: intensities multiplied by [1 - v, 1 + v], v <= 1.
        contrast: deviations from the image's mean multiplied by [1 - v, 1 + v], v <= 1.
        padding: ``"border"`` (repeat the edge pixels) or ``"zeros"`` for samples outside the image.

    Example:
        >>> AugmentSpec(rotate=15, shift=2).to_string()
        'rotate=15,shift=2'
    """

    rotate: float = 0.0
    scale: float = 0.0
    shift: float = 0.0
    perspective: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    padding: str = "border"

    def __post_init__(self) -> None:
        for name in _RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"augment {name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"augment {name} must be >= 0, got {value}")
            object.__setattr__(self, name, float(value))
        limits = {"rotate": (180.0, True), "scale": (1.0, False), "perspective": (0.25, False)}
        limits.update({"brightness": (1.0, True), "contrast": (1.0, True)})
        for name, (limit, inclusive) in limits.items():
            value = getattr(self, name)
            if value > limit or (value == limit and not inclusive):
                bound = f"<= {limit:g}" if inclusive else f"< {limit:g}"
                raise ValueError(f"augment {name} must be {bound}, got {value:g}")
        if self.padding not in PADDINGS:
            raise ValueError(f"augment padding must be one of {list(PADDINGS)}, got {self.padding!r}")

    @property
    def is_identity(self) -> bool:
        """True when every range is zero: :func:`augment_batch` returns its input unchanged."""
        return not (self.is_geometric or self.is_photometric)

    @property
    def is_geometric(self) -> bool:
        """True when a rotation, scale, shift or perspective range is non-zero (the pixels are resampled)."""
        return any(getattr(self, name) for name in ("rotate", "scale", "shift", "perspective"))

    @property
    def is_photometric(self) -> bool:
        """True when a brightness or contrast range is non-zero."""
        return bool(self.brightness or self.contrast)

    def to_string(self) -> str:
        """The canonical string form, which :func:`parse_augment` reads back (``"none"`` if all zero)."""
        values = asdict(self)
        parts = [f"{name}={values[name]:g}" for name in _RANGES if values[name]]
        if self.padding != "border":
            parts.append(f"padding={self.padding}")
        return ",".join(parts) or "none"


_RANGES = ("rotate", "scale", "shift", "perspective", "brightness", "contrast")

AUGMENT_PRESETS: dict[str, AugmentSpec] = {
    # Sermanet & LeCun (2011)'s jitter of GTSRB: +-2 px, scale 0.9-1.1, +-15 degrees; plus a mild
    # brightness and contrast jitter (the signs are photographed in every light).
    "gtsrb": AugmentSpec(rotate=15, scale=0.1, shift=2, brightness=0.2, contrast=0.2),
}


def parse_augment(text: str) -> AugmentSpec:
    """An :class:`AugmentSpec` from its string form: a preset name, ``"none"``, or ``key=value,...``.

    Keys are the fields of :class:`AugmentSpec`; values are numbers (``padding``: ``border`` or
    ``zeros``). Presets: :data:`AUGMENT_PRESETS`.

    Raises:
        ValueError: an unknown key or preset, a repeated key, a value that is not a number, or one
            out of range; one line that says what was expected.

    Example:
        >>> parse_augment("rotate=15,scale=0.1").scale
        0.1
        >>> parse_augment("gtsrb").shift
        2.0
    """
    if not isinstance(text, str):
        raise ValueError(f"augment spec must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if stripped.lower() in ("", "none"):
        return AugmentSpec()
    if stripped.lower() in AUGMENT_PRESETS:
        return AUGMENT_PRESETS[stripped.lower()]
    if "=" not in stripped:
        raise ValueError(
            f"unknown augment preset {stripped!r}; give one of {sorted(AUGMENT_PRESETS)}, 'none' or "
            f"key=value pairs separated by commas (keys: {', '.join(_KEYS)})"
        )
    values: dict[str, object] = {}
    for item in stripped.split(","):
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"augment spec {text!r}: expected key=value, got {item.strip()!r}")
        if key not in _KEYS:
            raise ValueError(f"augment spec {text!r}: unknown key {key!r}; valid: {', '.join(_KEYS)}")
        if key in values:
            raise ValueError(f"augment spec {text!r}: key {key!r} given twice")
        values[key] = raw if key == "padding" else _number(key, raw, text)
    return AugmentSpec(**values)  # type: ignore[arg-type]


_KEYS = tuple(f.name for f in fields(AugmentSpec))


def _number(key: str, raw: str, text: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"augment spec {text!r}: {key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"augment spec {text!r}: {key} must be a finite number, got {raw!r}")
    return value


def sample_augment_params(spec: AugmentSpec, n: int, generator: torch.Generator) -> Params:
    """Draw the jitter of ``n`` images.

    The same ``n x 14`` float64 uniforms are drawn whatever the spec (row ``i`` belongs to image ``i``),
    then mapped onto its ranges.

    Returns:
        ``angle`` (degrees), ``scale``: Tensor[n]; ``shift``: Tensor[n, 2] pixels (x, y);
        ``corners``: Tensor[n, 4, 2], corner offsets in fractions of the side (x, y), corners in
        the order top-left, top-right, bottom-right, bottom-left; ``contrast``, ``brightness``:
        Tensor[n] factors. All float64.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    u = torch.rand(n, _NUM_DRAWS, generator=generator, dtype=torch.float64)
    symmetric = 2.0 * u - 1.0  # (n, 14) in [-1, 1)
    return {
        "angle": symmetric[:, 0] * spec.rotate,
        "scale": 1.0 + symmetric[:, 1] * spec.scale,
        "shift": symmetric[:, 2:4] * spec.shift,
        "corners": symmetric[:, 4:12].reshape(n, 4, 2) * spec.perspective,
        "contrast": 1.0 + symmetric[:, 12] * spec.contrast,
        "brightness": 1.0 + symmetric[:, 13] * spec.brightness,
    }


# Corners of the frame in units of half a side, (x, y), in the order of ``corners``: (4, 2).
_UNIT_CORNERS = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)


def augment_matrices(params: Params, size: tuple[int, int]) -> Tensor:
    """Input-from-output homographies of the jitter, in normalised coordinates.

    The forward map (input -> output), in centred pixels, is: scale by ``s`` and rotate by ``a``
    about the centre, move by ``t``, then the projective map that takes the frame's corners to the
    jittered corners. The sampler needs its inverse, written out directly (no matrix inversion):
    ``input_from_output = A^-1 @ P^-1`` with ``A^-1 p = R(-a) (p - t) / s``.

    Args:
        params: from :func:`sample_augment_params`.
        size: (H, W) of the images.

    Returns:
        float64 Tensor[N, 3, 3] for :func:`stnkit.geometry.projective_grid` (``align_corners=False``).
    """
    height, width = size
    angle = torch.deg2rad(params["angle"])  # (N,), positive turns from +x towards +y
    scale, shift = params["scale"], params["shift"]
    n = angle.shape[0]
    cos, sin = torch.cos(angle), torch.sin(angle)
    inverse_rotation = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)
    linear = inverse_rotation / scale[:, None, None]  # (N, 2, 2)
    offset = -(linear @ shift[:, :, None])  # (N, 2, 1)
    similarity_inverse = torch.cat((linear, offset), dim=2)  # (N, 2, 3)
    last_row = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(n, 1, 3)
    similarity_inverse = torch.cat((similarity_inverse, last_row), dim=1)  # (N, 3, 3)
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)  # pixels per normalised unit
    pixels = similarity_inverse  # (N, 3, 3), centred pixels
    if bool(params["corners"].any()):  # else P is the identity: keep the last row exactly (0, 0, 1)
        frame = (_UNIT_CORNERS * half).expand(n, 4, 2)  # centred pixels
        side = torch.tensor([float(width), float(height)], dtype=torch.float64)
        jittered = frame + params["corners"] * side
        perspective_inverse = homography_from_points(jittered, frame)  # output corners -> frame corners
        pixels = similarity_inverse @ perspective_inverse
    # Conjugate by D = diag(W/2, H/2, 1): normalised -> centred pixels -> normalised.
    to_pixels = torch.diag(torch.cat((half, torch.ones(1, dtype=torch.float64))))
    to_normalized = torch.diag(torch.cat((1.0 / half, torch.ones(1, dtype=torch.float64))))
    return to_normalized @ pixels @ to_pixels


def _warp(images: Tensor, matrices: Tensor, padding: str) -> Tensor:
    """uint8 (N, C, H, W) through float64 homographies (N, 3, 3) -> uint8 (N, C, H, W), one sampling."""
    n, c, height, width = images.shape
    if bool((matrices[:, 2] == torch.tensor([0.0, 0.0, 1.0], dtype=matrices.dtype)).all()):
        grid = affine_grid(matrices[:, :2], (n, c, height, width))  # no perspective: 6x cheaper
    else:
        grid = projective_grid(matrices, (n, c, height, width))  # (N, H, W, 2), float64
    if padding == "border":
        # Clip positions to the centres of the edge pixels (torch's "border" padding), so every
        # sample reads the image; the fixed-point sampler then never sees the outside.
        limits = torch.tensor([1.0 - 1.0 / width, 1.0 - 1.0 / height], dtype=torch.float64)
        grid = torch.maximum(torch.minimum(grid, limits), -limits)
    return sample_fixed_point(images, grid)


def _photometric(pixels: Tensor, contrast: Tensor, brightness: Tensor) -> Tensor:
    """uint8 (N, C, H, W) -> float32 ``((x - mean) * contrast + mean) * brightness``, clipped to [0, 1].

    The per-image mean is an exact integer sum; the factors are folded into one gain and one offset
    per image in float64, so the float32 work is one multiply and one add per pixel.
    """
    flat = pixels.flatten(1)  # (N, C * H * W)
    mean = flat.sum(dim=1, dtype=torch.int64).double() / (255.0 * max(1, flat.shape[1]))  # (N,)
    gain = (contrast * brightness).float()
    offset = (mean * (1.0 - contrast) * brightness).float()
    images = to_unit_float(pixels)
    return images.mul_(gain[:, None, None, None]).add_(offset[:, None, None, None]).clamp_(0.0, 1.0)


def apply_augment(images: Tensor, params: Params, spec: AugmentSpec) -> Tensor:
    """Jitter a batch with the given parameters: one warp, then contrast and brightness.

    Only the parts of ``spec`` with a non-zero range are applied (the parameters of the others
    are ignored), so a spec without geometric ranges never resamples the pixels.

    Args:
        images: uint8 Tensor[N, C, H, W], or float Tensor[N, C, H, W] in [0, 1] (rounded to
            8 bits: the loaders' images are exact multiples of 1/255).
        params: from :func:`sample_augment_params` for N images.
        spec: which parts to apply, and the padding.

    Returns:
        float32 Tensor[N, C, H, W] in [0, 1]; the input itself (unchanged) when ``spec`` is all zero
        and the input is float32.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {list(images.shape)}")
    if spec.is_identity and images.dtype == torch.float32:
        return images
    pixels = to_uint8(images)
    if spec.is_geometric and pixels.shape[0]:
        pixels = _warp(pixels, augment_matrices(params, (pixels.shape[2], pixels.shape[3])), spec.padding)
    if spec.is_photometric:
        return _photometric(pixels, params["contrast"], params["brightness"])
    return to_unit_float(pixels)


def augment_batch(images: Tensor, spec: AugmentSpec, generator: torch.Generator) -> Tensor:
    """Jitter a batch, each image with its own parameters drawn from ``generator``.

    Args:
        images: uint8 or float (in [0, 1]) Tensor[N, C, H, W].
        spec: the ranges; all zero returns ``images`` untouched.
        generator: the source of the parameters (seed it for reproducible jitter).

    Returns:
        float32 Tensor[N, C, H, W] in [0, 1].

    Example:
        >>> images = torch.rand(4, 3, 32, 32)
        >>> out = augment_batch(images, parse_augment("gtsrb"), torch.Generator().manual_seed(0))
        >>> out.shape, bool(out.min() >= 0 and out.max() <= 1)
        (torch.Size([4, 3, 32, 32]), True)
    """
    if spec.is_identity and images.dtype == torch.float32:
        return images
    params = sample_augment_params(spec, images.shape[0], generator)
    return apply_augment(images, params, spec)


@dataclass(frozen=True)
class TtaView:
    """One fixed pose of test-time augmentation: a rotation, an isotropic scale and a shift.

    Calling it warps a batch the way the training jitter does (the same matrices, fixed-point
    sampling and padding), with these values for every image instead of random ones.

    Attributes:
        name: what the view is, for reports (``"identity"``, ``"rotate=-5"``, ``"shift=(0,+1)"``).
        angle: rotation in degrees.
        scale: isotropic scale factor (> 0).
        shift: translation in pixels, (x, y).
        padding: ``"border"`` or ``"zeros"``, as in :class:`AugmentSpec`.
    """

    name: str
    angle: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    padding: str = "border"

    def __post_init__(self) -> None:
        if not isinstance(self.shift, (tuple, list)) or len(self.shift) != 2:
            raise ValueError(f"view shift must be (x, y) pixels, got {self.shift!r}")
        for field, value in (
            ("angle", self.angle),
            ("scale", self.scale),
            *zip(("shift x", "shift y"), self.shift),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"view {field} must be a finite number, got {value!r}")
        if self.scale <= 0:
            raise ValueError(f"view scale must be > 0, got {self.scale:g}")
        if self.padding not in PADDINGS:
            raise ValueError(f"view padding must be one of {list(PADDINGS)}, got {self.padding!r}")
        object.__setattr__(self, "shift", (float(self.shift[0]), float(self.shift[1])))

    @property
    def is_identity(self) -> bool:
        """True when the view leaves every pixel where it is."""
        return self.angle == 0 and self.scale == 1 and self.shift == (0.0, 0.0)

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 or float (in [0, 1]) Tensor[N, C, H, W] -> float32 Tensor[N, C, H, W] in [0, 1].

        Float images are rounded to 8 bits first, as :func:`apply_augment` does (the loaders' images
        are exact multiples of 1/255, so theirs pass unchanged). The warp runs on the CPU; the
        result is on the images' device.
        """
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {list(images.shape)}")
        pixels = to_uint8(images.cpu())
        if self.is_identity or not pixels.shape[0]:
            return to_unit_float(pixels).to(images.device)
        n = pixels.shape[0]
        params = {
            "angle": torch.full((n,), float(self.angle), dtype=torch.float64),
            "scale": torch.full((n,), float(self.scale), dtype=torch.float64),
            "shift": torch.tensor([self.shift], dtype=torch.float64).expand(n, 2),
            "corners": torch.zeros(n, 4, 2, dtype=torch.float64),
        }
        matrices = augment_matrices(params, (pixels.shape[2], pixels.shape[3]))
        return to_unit_float(_warp(pixels, matrices, self.padding)).to(images.device)


def tta_views(spec: AugmentSpec | str) -> list[TtaView]:
    """The views of test-time augmentation: the image itself, then each range's two extremes.

    ``rotate=R`` adds rotations by -R and +R degrees, ``scale=S`` scales 1 - S and 1 + S, and
    ``shift=P`` shifts by P pixels left, right, up and down: at most 1 + 2 + 2 + 4 = 9 views. A
    classifier's softmax averaged over them is :func:`stnkit.engine.predict_views`.

    Args:
        spec: an :class:`AugmentSpec` or its string form (:func:`parse_augment`), with only
            ``rotate``, ``scale``, ``shift`` (and ``padding``) set.

    Raises:
        TypeError: ``spec`` is neither an :class:`AugmentSpec` nor a string.
        ValueError: a perspective, brightness or contrast range (views are poses), or no range at all.

    Example:
        >>> " ".join(view.name for view in tta_views("rotate=5,shift=1"))
        'identity rotate=-5 rotate=+5 shift=(-1,0) shift=(+1,0) shift=(0,-1) shift=(0,+1)'
    """
    if isinstance(spec, str):
        spec = parse_augment(spec)
    elif not isinstance(spec, AugmentSpec):
        raise TypeError(f"test-time views need an AugmentSpec or its string form, got {type(spec).__name__}")
    other = [
        f"{name}={getattr(spec, name):g}"
        for name in ("perspective", "brightness", "contrast")
        if getattr(spec, name)
    ]
    if other:
        raise ValueError(f"test-time views take rotate, scale and shift only, got {', '.join(other)}")
    if not spec.is_geometric:
        raise ValueError("test-time views need at least one of rotate, scale and shift, got none")
    views = [TtaView("identity", padding=spec.padding)]
    if spec.rotate:
        views += [
            TtaView(f"rotate={a:+g}", angle=a, padding=spec.padding) for a in (-spec.rotate, spec.rotate)
        ]
    if spec.scale:
        views += [
            TtaView(f"scale={s:g}", scale=s, padding=spec.padding) for s in (1 - spec.scale, 1 + spec.scale)
        ]
    if spec.shift:
        p = spec.shift
        for dx, dy in ((-p, 0.0), (p, 0.0), (0.0, -p), (0.0, p)):
            views.append(
                TtaView(f"shift=({_signed(dx)},{_signed(dy)})", shift=(dx, dy), padding=spec.padding)
            )
    return views


def _signed(value: float) -> str:
    return "0" if value == 0 else f"{value:+g}"
