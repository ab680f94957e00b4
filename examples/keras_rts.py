"""ST-CNN on RTS-MNIST in Keras 3, with stnkit.keras (TensorFlow or JAX backend, on the CPU).

The data are stnkit's own distorted MNIST (rotated, scaled and translated on a 42x42 canvas,
docs/data.md): stnkit.data makes them with torch, and this script turns each batch into NumPy arrays.
Training images are distorted afresh every epoch; the 10,000 test images once, with the fixed seed.
The model mirrors the torch main job's ``st-cnn-affine`` (src/stnkit/models/mnist.py) and its recipe
(Adam, peak lr 4e-3, warm-up then cosine decay, batch 128): an affine transformer crops the 42x42 canvas
to 28x28, then two 5x5 conv + max-pool stages and a 128-unit layer classify.

    KERAS_BACKEND=tensorflow python examples/keras_rts.py --epochs 3 --out results/keras

writes ``<out>/rts_<backend>.json`` (test error, times, CPU, command) and ``<out>/rts_<backend>.png``
(test digits and what the transformer made of them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from stnkit.keras import SpatialTransformer
from stnkit.machine import cpu_model

IMAGE_SIZE = 42  # RTS canvas
CROP_SIZE = 28  # the transformer's output: MNIST's own size


def localization_net() -> keras.Sequential:
    """The ST-CNN localisation net: look at the input downsampled by 2, two 5x5 conv stages, 50 units."""
    return keras.Sequential(
        [
            keras.layers.AveragePooling2D(2, padding="same"),
            keras.layers.Conv2D(20, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2, padding="same"),
            keras.layers.Conv2D(20, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2, padding="same"),
            keras.layers.AveragePooling2D(2),  # 6x6 -> 3x3, torch's adaptive pooling for 42x42 inputs
            keras.layers.Flatten(),
            keras.layers.Dense(50, activation="relu"),
        ],
        name="localization",
    )


def st_cnn(num_classes: int = 10) -> keras.Model:
    """Transformer (affine, 42x42 -> 28x28) -> 2 x (5x5 conv, ReLU, max-pool) -> 128 -> classes."""
    return keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1)),
            SpatialTransformer(localization_net(), transform="affine", output_size=CROP_SIZE, name="stn"),
            keras.layers.Conv2D(32, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(num_classes),
        ],
        name="st_cnn_affine",
    )


def learning_rate(
    peak: float, total_steps: int, warmup_fraction: float = 0.15
) -> keras.optimizers.schedules.CosineDecay:
    """The torch recipe's one-cycle: linear warm-up from peak / 25, then cosine decay to 0."""
    warmup = int(warmup_fraction * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 25,
        decay_steps=max(total_steps - warmup, 1),
        alpha=0.0,
        warmup_target=peak,
        warmup_steps=warmup,
    )


def numpy_batches(loader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images (B, 42, 42, 1) float32, labels (B,) int64) from a stnkit loader of torch tensors."""
    for images, labels in loader:
        yield images.permute(0, 2, 3, 1).numpy(), labels.numpy()


def evaluate(model: keras.Model, loader) -> float:
    """Test error (fraction) over the whole loader."""
    wrong = total = 0
    for images, labels in numpy_batches(loader):
        logits = model.predict_on_batch(images)
        wrong += int(np.sum(np.argmax(logits, axis=1) != labels))
        total += len(labels)
    return wrong / total


def save_picture(model: keras.Model, images: np.ndarray, path: Path) -> None:
    """Test digits (top row) and the transformer's 28x28 outputs (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outputs = keras.ops.convert_to_numpy(model.get_layer("stn")(images))
    figure, axes = plt.subplots(2, len(images), figsize=(1.2 * len(images), 2.6))
    for column in range(len(images)):
        for row, picture in enumerate((images[column], outputs[column])):
            axes[row, column].imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[row, column].axis("off")
    axes[0, 0].set_title("input 42x42", fontsize=7, loc="left")
    axes[1, 0].set_title("transformer 28x28", fontsize=7, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def train(
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 4e-3,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    data_root: str | None = None,
) -> tuple[keras.Model, dict[str, object]]:
    """Train the ST-CNN on RTS; return the model and a summary (test error after each epoch, times)."""
    from stnkit.data import make_loader  # torch, for the data only

    keras.utils.set_random_seed(seed)
    train_loader = make_loader(
        "rts", split="train", batch_size=batch_size, seed=seed, limit=train_limit, root=data_root
    )
    test_loader = make_loader("rts", split="test", batch_size=500, limit=test_limit, root=data_root)
    model = st_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(lr, epochs * len(train_loader))),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # XLA on JAX (its only mode); on TensorFlow the oneDNN kernels without XLA trained this model
        # 2x faster on our 2-core CPU (676 vs 342 images/s), so no jit_compile there.
        jit_compile=keras.backend.backend() == "jax",
    )
    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_loader.set_epoch(epoch - 1)
        seen = 0
        for images, labels in numpy_batches(train_loader):
            model.train_on_batch(images, labels)
            seen += len(labels)
        train_seconds = time.perf_counter() - start
        error = evaluate(model, test_loader)
        history.append(
            {
                "epoch": epoch,
                "test_error": error,
                "seconds": round(time.perf_counter() - start, 1),
                "images": seen,
            }
        )
        print(f"epoch {epoch}: test error {100 * error:.2f}% after {train_seconds:.0f} s", flush=True)
    summary = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "epochs": epochs,
        "batch_size": batch_size,
        "peak_lr": lr,
        "seed": seed,
        "train_images_per_epoch": train_loader.num_samples,
        "test_images": test_loader.num_samples,
        "test_error": history[-1]["test_error"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "history": history,
        "parameters": model.count_params(),
    }
    return model, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None, help="use only this many training digits")
    parser.add_argument("--test-limit", type=int, default=None, help="use only this many test digits")
    parser.add_argument("--data-root", default=None, help="default: ../shared/data or $STNKIT_DATA")
    parser.add_argument("--out", type=Path, default=Path("results/keras"))
    args = parser.parse_args(argv)
    model, summary = train(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        data_root=args.data_root,
    )
    summary["cpu"] = cpu_model()
    summary["threads"] = os.cpu_count()
    summary["command"] = f"KERAS_BACKEND={summary['backend']} python examples/keras_rts.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"rts_{summary['backend']}"
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    from stnkit.data import make_loader

    images, _ = next(
        numpy_batches(make_loader("rts", split="test", batch_size=10, limit=10, root=args.data_root))
    )
    save_picture(model, images, args.out / f"{name}.png")
    print(
        f"test error {100 * summary['test_error']:.2f}% in {summary['wall_seconds']:.0f} s; wrote {args.out / name}.*"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
