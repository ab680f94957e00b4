"""The model registry: every model builds, has the right output shape and starts as identity."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stnkit.models import (
    Classifier,
    ParallelSpatialTransformer,
    count_parameters,
    create_model,
    list_models,
    register_model,
)


def _inputs(name: str) -> dict:
    """Builder arguments of the dataset each model is meant for (small sizes to stay fast)."""
    if name.startswith("gtsrb"):
        return {"in_channels": 3, "num_classes": 43, "image_size": (32, 32)}
    if name.startswith("2x"):
        return {"in_channels": 2, "num_classes": 19, "image_size": (42, 42)}
    return {"in_channels": 1, "num_classes": 10, "image_size": (42, 42)}


def test_registry_lists_the_paper_models() -> None:
    names = list_models()
    for expected in (
        "fcn",
        "cnn",
        "st-cnn-affine",
        "st-cnn-projective",
        "st-cnn-tps",
        "st-fcn-affine",
        "st-fcn-projective",
        "st-fcn-tps",
        "2xst-fcn-affine",
        "2xst-fcn-projective",
        "2xst-fcn-tps",
        "st-cnn-inner-affine",
        "gtsrb-st-cnn",
        "gtsrb-multi-st-cnn",
    ):
        assert expected in names
    assert names == sorted(names)
    assert list_models("tps") == ["2xst-cnn-tps", "2xst-fcn-tps", "st-cnn-tps", "st-fcn-tps"]


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_two_transformer_models_have_two_heads_of_their_transform(transform: str) -> None:
    model = create_model(f"2xst-fcn-{transform}", in_channels=2, num_classes=19, image_size=(42, 42))
    assert isinstance(model.stn, ParallelSpatialTransformer)
    heads = list(model.stn.heads)
    assert len(heads) == 2
    single = create_model(f"st-fcn-{transform}", in_channels=2, num_classes=19, image_size=(42, 42))
    assert type(heads[0].transform) is type(single.stn.transform)


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_stages(name: str) -> None:
    kw = _inputs(name)
    model = create_model(name, **kw).eval()  # eval: dropout off, so the stages compose exactly
    x = torch.rand(3, kw["in_channels"], *kw["image_size"])
    logits = model(x)
    assert logits.shape == (3, kw["num_classes"])
    assert torch.isfinite(logits).all()
    if isinstance(model, Classifier):
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), logits)


@pytest.mark.parametrize("name", [n for n in list_models() if "st-" in n])
def test_transformers_start_as_identity(name: str) -> None:
    kw = _inputs(name)
    model = create_model(name, **kw).eval()
    transformers = model.spatial_transformers()
    assert transformers, "an ST model must expose its transformers"
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [t.register_forward_hook(lambda m, i, o: seen.append((i[0], o))) for t in transformers]
    model(torch.rand(2, kw["in_channels"], *kw["image_size"]))
    for h in hooks:
        h.remove()
    assert len(seen) == len(transformers)  # every transformer ran, on images or feature maps
    for inp, out in seen:
        c = inp.shape[1]
        if out.shape[-2:] != inp.shape[-2:]:
            # A cropping transformer (crop_to) starts as the identity map: it samples the whole
            # input at the output resolution, which is what bilinear resizing does.
            inp = F.interpolate(inp, size=out.shape[-2:], mode="bilinear", align_corners=False)
        for k in range(out.shape[1] // c):  # parallel heads each reproduce their input
            torch.testing.assert_close(out[:, k * c : (k + 1) * c], inp, atol=1e-5, rtol=0)


def test_input_transformer_crops_large_inputs_only() -> None:
    assert create_model("st-cnn-affine").transform(torch.rand(1, 1, 42, 42)).shape[-1] == 28
    assert create_model("st-cnn-affine", crop_to=None).transform(torch.rand(1, 1, 42, 42)).shape[-1] == 42
    small = create_model("st-cnn-affine", image_size=(28, 28))
    assert small.transform(torch.rand(1, 1, 28, 28)).shape[-1] == 28
    assert create_model("st-fcn-affine").transform(torch.rand(1, 1, 42, 42)).shape[-1] == 28


def test_inner_transformer_sits_on_feature_maps() -> None:
    model = create_model("st-cnn-inner-affine")
    assert model.stn is None
    (stn,) = model.spatial_transformers()
    assert stn.localization.in_channels == 32  # the first conv stage's channels


def test_parallel_heads_share_one_localization() -> None:
    model = create_model("2xst-fcn-affine", in_channels=2, num_classes=19)
    stn = model.stn
    assert isinstance(stn, ParallelSpatialTransformer)
    x = torch.rand(4, 2, 42, 42)
    params = stn.localize(x)
    assert params.shape == (4, 2, 6)
    assert stn(x).shape == (4, 4, 28, 28)  # two heads x two channels, cropped to 28


@pytest.mark.parametrize("st, plain", [("st-cnn-affine", "cnn"), ("st-fcn-affine", "fcn")])
def test_baselines_match_the_parameter_budget(st: str, plain: str) -> None:
    a, b = count_parameters(create_model(st)), count_parameters(create_model(plain))
    assert abs(a - b) / a < 0.02


def test_gtsrb_multi_has_three_transformers() -> None:
    model = create_model("gtsrb-multi-st-cnn")
    assert len(model.spatial_transformers()) == 3
    assert create_model("gtsrb-cnn").stn is None


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(KeyError, match="st-cnn-affine"):
        create_model("resnet-9000")


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn")(lambda **_: nn.Identity())


def test_bad_builder_arguments() -> None:
    with pytest.raises(ValueError, match="stn_stage"):
        create_model("st-cnn-affine", stn_stage=5)
    with pytest.raises(ValueError, match="same length"):
        create_model("st-cnn-affine", channels=(8,), kernel_sizes=(3, 3))
    with pytest.raises(ValueError, match="num_heads"):
        ParallelSpatialTransformer(localization=nn.Linear(2, 2), num_heads=0)


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT",
    reason="torch 2.13's inductor emits at::vec code that does not compile under ATEN_CPU_CAPABILITY=default",
)
def test_compiled_model_matches_eager() -> None:
    # Compiled graphs take the plain grid + grid_sample path and plain nn.Conv2d (stnkit's fused kernel
    # and InputGradConv2d step aside while tracing); eager takes both fast paths. Same numbers either way.
    # The transformer is moved off the identity first: there every sampling point sits exactly on a
    # pixel, where bilinear sampling has only one-sided derivatives (docs/convention.md).
    torch.manual_seed(0)
    model = create_model(
        "st-cnn-affine",
        in_channels=1,
        num_classes=10,
        image_size=(28, 28),
        channels=(4, 8),
        hidden=(16,),
        loc_channels=(4, 4),
        loc_features=8,
    )
    with torch.no_grad():
        model.stn.head.bias.add_(0.05 * torch.randn(6))
    images = torch.rand(4, 1, 28, 28)

    def logits_and_grads(forward: nn.Module) -> list[torch.Tensor]:
        model.zero_grad()
        logits = forward(images)
        logits.square().sum().backward()
        return [logits.detach(), *(p.grad.clone() for p in model.parameters() if p.grad is not None)]

    eager = logits_and_grads(model)
    compiled = logits_and_grads(torch.compile(model))
    assert len(eager) == len(compiled)
    for ours, theirs in zip(eager, compiled):
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_every_model_names_the_image_size_it_was_built_for(name: str) -> None:
    model = create_model(name, image_size=(28, 28))
    channels = 3 if name.startswith("gtsrb") else 1
    with pytest.raises(
        ValueError,
        match=re.escape(f"was built for (N, {channels}, 28, 28) images, got [2, {channels}, 32, 32]"),
    ):
        model(torch.rand(2, channels, 32, 32))
    assert model(torch.rand(2, channels, 28, 28)).shape[0] == 2
