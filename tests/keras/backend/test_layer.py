"""The Keras SpatialTransformer layer: identity at init, both data formats, config, saving, jit, training."""

from __future__ import annotations

import numpy as np
import pytest

from stnkit import keras as sk

keras = pytest.importorskip("keras")
BACKEND = keras.backend.backend()
JIT_BACKENDS = ("tensorflow", "jax")


def numpy(x: object) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def small_localization(data_format: str = "channels_last") -> keras.layers.Layer:
    """Features that do not depend on the layout: the same numbers for both data formats."""
    return keras.Sequential(
        [
            keras.layers.GlobalAveragePooling2D(data_format=data_format),
            keras.layers.Dense(8, activation="tanh"),
        ]
    )


def perturb_regression(layer: sk.SpatialTransformer, seed: int = 0) -> None:
    """Move the regression head off the identity (small random weights on top of the identity bias)."""
    kernel, bias = layer.regression.get_weights()
    rng = np.random.default_rng(seed)
    layer.regression.set_weights([rng.normal(0, 0.1, kernel.shape), bias + rng.normal(0, 0.05, bias.shape)])


@pytest.mark.parametrize("transform", sk.TRANSFORMS)
def test_a_fresh_layer_is_the_identity(transform):
    stn = sk.SpatialTransformer(small_localization(), transform=transform)
    images = np.random.default_rng(0).random((2, 10, 12, 3), dtype=np.float32)
    out = numpy(stn(images))
    kernel, bias = stn.regression.get_weights()
    np.testing.assert_array_equal(kernel, 0.0)
    np.testing.assert_array_equal(bias, sk.identity_params(transform).astype(np.float32))
    np.testing.assert_array_equal(out, images)


def test_a_fresh_layer_with_an_output_size_resamples_the_whole_input():
    stn = sk.SpatialTransformer(small_localization(), transform="affine", output_size=(5, 6))
    images = np.random.default_rng(1).random((2, 10, 12, 1), dtype=np.float32)
    identity = np.repeat(sk.identity_params("affine")[None], 2, axis=0)
    np.testing.assert_array_equal(numpy(stn(images)), numpy(sk.warp(images, identity, output_size=(5, 6))))
    assert stn.compute_output_shape((None, 10, 12, 1)) == (None, 5, 6, 1)


def test_stages_localize_and_warp_compose_to_call():
    stn = sk.SpatialTransformer(small_localization(), transform="projective", output_size=7)
    images = np.random.default_rng(2).random((3, 9, 9, 2), dtype=np.float32)
    stn(images)
    perturb_regression(stn)
    params = stn.localize(images)
    assert tuple(params.shape) == (3, 8)
    np.testing.assert_array_equal(numpy(stn.warp(images, params)), numpy(stn(images)))


def test_channels_first_is_channels_last_transposed():
    last = sk.SpatialTransformer(small_localization("channels_last"), output_size=(6, 5))
    first = sk.SpatialTransformer(
        small_localization("channels_first"), output_size=(6, 5), data_format="channels_first"
    )
    images = np.random.default_rng(3).random((2, 8, 9, 3), dtype=np.float32)
    last(images)
    first(images.transpose(0, 3, 1, 2))
    perturb_regression(last)
    first.set_weights(last.get_weights())
    out_last = numpy(last(images))
    out_first = numpy(first(images.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(out_first, out_last.transpose(0, 3, 1, 2), atol=1e-6)
    assert first.compute_output_shape((None, 3, 8, 9)) == (None, 3, 6, 5)


def test_config_round_trip():
    stn = sk.SpatialTransformer(
        small_localization(),
        transform="tps",
        num_control_points=9,
        output_size=(7, 8),
        padding_mode="border",
        align_corners=True,
        name="stn",
    )
    images = np.random.default_rng(4).random((2, 9, 10, 1), dtype=np.float32)
    stn(images)
    perturb_regression(stn)
    clone = sk.SpatialTransformer.from_config(stn.get_config())
    assert clone.get_config() == stn.get_config()
    clone(images)
    clone.set_weights(stn.get_weights())
    np.testing.assert_array_equal(numpy(clone(images)), numpy(stn(images)))


def classifier(transform: str = "similarity", data_format: str = "channels_last") -> keras.Model:
    shape = (12, 12, 1) if data_format == "channels_last" else (1, 12, 12)
    localization = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(8, activation="relu")])
    return keras.Sequential(
        [
            keras.Input(shape),
            sk.SpatialTransformer(localization, transform=transform, output_size=8, data_format=data_format),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def test_a_model_saves_and_loads_in_the_keras_format(tmp_path):
    model = classifier("affine")
    perturb_regression(model.layers[0])
    images = np.random.default_rng(5).random((4, 12, 12, 1), dtype=np.float32)
    expected = numpy(model(images))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.layers[0], sk.SpatialTransformer)
    np.testing.assert_array_equal(numpy(loaded(images)), expected)


@pytest.mark.parametrize("transform", ["affine", "tps"])
def test_training_moves_the_transformer_off_the_identity(transform):
    """At the identity the head's gradient is the forward difference, not zero: one step moves it.

    Under ``jit_compile=True`` on TensorFlow and JAX (XLA), and compiled predictions equal eager ones.
    """
    keras.utils.set_random_seed(0)
    model = classifier(transform)
    jit = BACKEND in JIT_BACKENDS
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    rng = np.random.default_rng(6)
    images = rng.random((8, 12, 12, 1), dtype=np.float32)
    labels = rng.integers(0, 3, 8)
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    kernel, _ = model.layers[0].regression.get_weights()
    assert np.abs(kernel).max() > 0
    np.testing.assert_allclose(model.predict(images, verbose=0), numpy(model(images)), rtol=1e-5, atol=1e-5)
