"""Per-example predictions and what they tell: errors per class, the confusion matrix, two models compared.

:func:`predict` runs a classifier over a loader once and keeps every example's logits, in the
loader's order; :func:`predict_views` averages its softmax over several views of each example
(test-time augmentation), :func:`predict_ensemble` over several models too. The other functions
are plain tensor arithmetic on labels and predictions, so they work for predictions from anywhere:

- :func:`per_class_errors` / :func:`format_class_table`: images, errors and error % per class.
- :func:`confusion_matrix`: counts of (true class, predicted class).
- :func:`compare_predictions`: the examples model A gets right and B wrong, the reverse, and those
  both get wrong; :func:`hardest_first` orders them by how sure the wrong model was.
- :func:`select_examples`: the images at given positions of a loader, to draw them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stnkit.engine.device import model_device

__all__ = [
    "ClassErrors",
    "Comparison",
    "Predictions",
    "classification_scores",
    "compare_predictions",
    "confusion_matrix",
    "eval_logits",
    "format_class_table",
    "hardest_first",
    "per_class_errors",
    "predict",
    "predict_ensemble",
    "predict_views",
    "select_examples",
]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Predictions:
    """A classifier's outputs on every example of a loader, in the loader's order."""

    labels: Tensor  # (N,) int64, the true classes
    logits: Tensor  # (N, K) float32

    @property
    def predictions(self) -> Tensor:
        """The predicted classes, (N,) int64."""
        return self.logits.argmax(dim=1)

    @property
    def probabilities(self) -> Tensor:
        """Softmax of the logits, (N, K)."""
        return self.logits.softmax(dim=1)

    def metrics(self) -> dict[str, float]:
        """``loss``, ``accuracy``, ``error`` and ``count``, the keys of :func:`stnkit.engine.evaluate`.

        Accuracy and error equal evaluate's exactly; the mean cross-entropy is summed in another
        order, so it may differ in the last digits.
        """
        count = int(self.labels.numel())
        correct = int((self.predictions == self.labels).sum())
        loss = float(F.cross_entropy(self.logits, self.labels, reduction="sum")) if count else 0.0
        return classification_scores(loss, correct, count)


def classification_scores(loss_sum: float, correct: int, count: int) -> dict[str, float]:
    """``loss`` (mean cross-entropy), ``accuracy``, ``error`` and ``count`` from sums over ``count`` examples."""
    accuracy = correct / max(count, 1)
    return {"loss": loss_sum / max(count, 1), "accuracy": accuracy, "error": 1.0 - accuracy, "count": count}


def eval_logits(
    model: nn.Module, loader: Iterable[Batch], *, channels_last: bool = False
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(logits, labels)`` of each batch of ``loader``, with ``model`` in eval mode meanwhile (its mode
    is restored when the iteration ends); both on the model's device. Call it under ``torch.no_grad()``."""
    was_training = model.training
    device = model_device(model)
    model.eval()
    try:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield model(images), labels
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[Batch], *, channels_last: bool = False) -> Predictions:
    """Run ``model`` (in eval mode) over ``loader`` once and keep the logits of every example.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> batches = [(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))]
        >>> predict(model, batches).logits.shape
        torch.Size([2, 3])
    """
    return _gathered(eval_logits(model, loader, channels_last=channels_last))


def _gathered(batches: Iterable[tuple[Tensor, Tensor]]) -> Predictions:
    """:class:`Predictions` from the (logits (B, K), labels (B,)) of every batch, on the CPU."""
    labels: list[Tensor] = []
    logits: list[Tensor] = []
    for batch_logits, batch_labels in batches:
        logits.append(batch_logits.float().cpu())
        labels.append(batch_labels.cpu())
    if not labels:
        raise ValueError("the loader yielded no batches: nothing to predict")
    return Predictions(labels=torch.cat(labels).long(), logits=torch.cat(logits))


def _log_mean_exp(log_probabilities: Tensor) -> Tensor:
    """log(mean(exp(x))) over dim 0: the log of the average of probabilities given as logs."""
    return log_probabilities.logsumexp(dim=0) - math.log(log_probabilities.shape[0])


@torch.no_grad()
def predict_views(
    model: nn.Module,
    loader: Iterable[Batch],
    views: Sequence[Callable[[Tensor], Tensor]],
    *,
    channels_last: bool = False,
) -> Predictions:
    """Test-time augmentation: ``model``'s softmax averaged over several views of every example.

    Each batch is passed through every view (for instance :func:`stnkit.data.tta_views`) and the
    model sees all of them in one forward pass. The returned logits are the logarithms of the
    averaged probabilities, so :meth:`Predictions.probabilities` is that average and
    :meth:`Predictions.metrics` its cross-entropy.

    Args:
        model: a classifier, run in eval mode.
        loader: batches of (images (B, C, H, W), labels (B,)).
        views: functions from a batch of images to a batch of the same shape; pass ``[lambda x: x]``
            for plain predictions.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> batches = [(torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))]
        >>> flipped = lambda images: images.flip(-1)
        >>> predict_views(model, batches, [lambda images: images, flipped]).logits.shape
        torch.Size([2, 3])
    """
    if not views:
        raise ValueError("views is empty: give at least one view (e.g. the identity, lambda x: x)")
    batches = eval_logits(model, _viewed(loader, views), channels_last=channels_last)
    return _gathered(
        # (V * B, K) logits, view after view -> (B, K) log of the probabilities averaged over the views
        (_log_mean_exp(logits.float().log_softmax(dim=1).reshape(len(views), labels.shape[0], -1)), labels)
        for logits, labels in batches
    )


def predict_ensemble(
    models: Sequence[nn.Module],
    loader: Iterable[Batch],
    views: Sequence[Callable[[Tensor], Tensor]] | None = None,
    *,
    channels_last: bool = False,
) -> Predictions:
    """An ensemble: the softmax averaged over several models (and over ``views`` of each example).

    Each model passes over ``loader`` once (:func:`predict_views`), so the loader must give the same
    examples in the same order every time (an evaluation loader does). Every model and view weighs
    the same; the logits returned are the logarithms of the averaged probabilities.

    Raises:
        ValueError: no models, an empty list of views, or passes over the loader whose labels differ.

    Example:
        >>> models = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(2)]
        >>> batches = [(torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))]
        >>> predict_ensemble(models, batches).probabilities.shape
        torch.Size([2, 3])
    """
    if not models:
        raise ValueError("models is empty: give at least one model")
    passes = [
        predict_views(model, loader, [_unchanged] if views is None else views, channels_last=channels_last)
        for model in models
    ]
    for number, other in enumerate(passes[1:], start=2):
        if not torch.equal(other.labels, passes[0].labels):
            raise ValueError(
                f"the loader gave other labels for model {number} than for model 1: it must repeat "
                "the same examples in the same order (shuffle off)"
            )
    averaged = _log_mean_exp(torch.stack([one.logits for one in passes]))  # (M, N, K) -> (N, K)
    return Predictions(labels=passes[0].labels, logits=averaged)


def _unchanged(images: Tensor) -> Tensor:
    return images


def _viewed(loader: Iterable[Batch], views: Sequence[Callable[[Tensor], Tensor]]) -> Iterator[Batch]:
    """Each batch of ``loader`` as (V * B images, view after view; the B labels)."""
    for images, labels in loader:
        outputs = [view(images) for view in views]
        for view, output in zip(views, outputs):
            if output.shape != images.shape:
                raise ValueError(
                    f"a view must keep the batch's shape {list(images.shape)}, {view!r} gave {list(output.shape)}"
                )
        yield torch.cat(outputs), labels


def _check_classes(name: str, values: Tensor, num_classes: int) -> None:
    if values.ndim != 1 or values.dtype.is_floating_point or values.dtype == torch.bool:
        raise ValueError(
            f"{name} should be a 1-D integer tensor, got {values.dtype} of shape {tuple(values.shape)}"
        )
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
        raise ValueError(
            f"{name} should lie in [0, {num_classes - 1}], got values from {int(values.min())} to {int(values.max())}"
        )


def _check_pair(labels: Tensor, predictions: Tensor, num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes should be >= 1, got {num_classes}")
    _check_classes("labels", labels, num_classes)
    _check_classes("predictions", predictions, num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.numel()} labels but {predictions.numel()} predictions")


def confusion_matrix(labels: Tensor, predictions: Tensor, num_classes: int) -> Tensor:
    """Counts of each (true class, predicted class) pair: row = true class, column = predicted.

    Returns:
        int64 Tensor[K, K]; the diagonal holds the correct predictions, a row sums to the class's
        images.

    Raises:
        ValueError: labels and predictions are not 1-D integer tensors of one length with values
            in ``[0, num_classes)``.

    Example:
        >>> confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2)
        tensor([[1, 1],
                [0, 1]])
    """
    _check_pair(labels, predictions, num_classes)
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class ClassErrors:
    """How a classifier did on the images of one class."""

    label: int
    count: int  # images of this class
    errors: int  # of them, classified as another class
    # (predicted label, images) for each class its errors went to, most images first
    mistaken_for: tuple[tuple[int, int], ...] = ()

    @property
    def error(self) -> float | None:
        """``errors / count``; None for a class without images."""
        return self.errors / self.count if self.count else None

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """A JSON-ready record: label, name, count, errors, error (a fraction or None), mistaken_for.

        ``names`` are the class names in label order (omit for none); ``mistaken_for`` lists
        ``{"label", "name", "count"}`` per class the errors went to, most first.

        Raises:
            TypeError: ``names`` is one string (it names a class per character) rather than a sequence.
        """
        if isinstance(names, str):
            raise TypeError(f"names must be the class names in label order, not one string ({names!r})")
        record: dict[str, Any] = {"label": self.label}
        if names is not None:
            record["name"] = names[self.label]
        record.update(count=self.count, errors=self.errors, error=self.error)
        record["mistaken_for"] = [
            {"label": other, **({"name": names[other]} if names is not None else {}), "count": count}
            for other, count in self.mistaken_for
        ]
        return record


def per_class_errors(labels: Tensor, predictions: Tensor, num_classes: int) -> list[ClassErrors]:
    """One :class:`ClassErrors` per class 0..K-1, classes without images included (count 0).

    Example:
        >>> rows = per_class_errors(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2)
        >>> rows[0].count, rows[0].errors, rows[1].count, rows[1].errors
        (2, 1, 1, 0)
        >>> rows[0].mistaken_for  # class 0's one error was taken for class 1
        ((1, 1),)
    """
    matrix = confusion_matrix(labels, predictions, num_classes)
    counts = matrix.sum(dim=1)
    correct = matrix.diagonal()
    return [
        ClassErrors(
            label=k,
            count=int(counts[k]),
            errors=int(counts[k] - correct[k]),
            mistaken_for=_mistaken_for(matrix[k].tolist(), k),
        )
        for k in range(num_classes)
    ]


def _mistaken_for(row: list[int], label: int) -> tuple[tuple[int, int], ...]:
    """The confusion matrix's ``row`` of ``label`` as (other label, images), most first, ties by label."""
    others = [(other, count) for other, count in enumerate(row) if other != label and count > 0]
    return tuple(sorted(others, key=lambda pair: (-pair[1], pair[0])))


def format_class_table(rows: Sequence[ClassErrors], class_names: Sequence[str] | None = None) -> str:
    """A Markdown table of :func:`per_class_errors`: class, (name,) images, errors, error %.

    Raises:
        ValueError: ``class_names`` does not name every row's class.
    """
    if class_names is not None and any(not 0 <= row.label < len(class_names) for row in rows):
        raise ValueError(
            f"{len(class_names)} class names do not name classes up to {max(r.label for r in rows)}"
        )
    head = ["class", *(["name"] if class_names is not None else []), "images", "errors", "error %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        name = [class_names[row.label]] if class_names is not None else []
        error = "-" if row.error is None else f"{100 * row.error:.2f}"
        lines.append(
            "| " + " | ".join([str(row.label), *name, str(row.count), str(row.errors), error]) + " |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    """Where two classifiers disagree on one set of examples; indices ascending, int64."""

    count: int  # examples compared
    a_right_b_wrong: Tensor  # (n1,)
    b_right_a_wrong: Tensor  # (n2,)
    both_wrong: Tensor  # (n3,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``count`` and, per group, its ``count`` and ``indices``."""
        groups = {"a_right_b_wrong": self.a_right_b_wrong, "b_right_a_wrong": self.b_right_a_wrong}
        groups["both_wrong"] = self.both_wrong
        return {
            "count": self.count,
            **{name: {"count": int(idx.numel()), "indices": idx.tolist()} for name, idx in groups.items()},
        }


def compare_predictions(labels: Tensor, predictions_a: Tensor, predictions_b: Tensor) -> Comparison:
    """Split the examples by which of two classifiers gets them right.

    Raises:
        ValueError: the three are not 1-D integer tensors of one length.

    Example:
        >>> c = compare_predictions(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]), torch.tensor([1, 1, 0]))
        >>> int(c.a_right_b_wrong), int(c.b_right_a_wrong), int(c.both_wrong)
        (0, 1, 2)
    """
    num_classes = 1 + max(int(t.max()) if t.numel() else 0 for t in (labels, predictions_a, predictions_b))
    _check_pair(labels, predictions_a, num_classes)
    _check_pair(labels, predictions_b, num_classes)
    right_a, right_b = predictions_a == labels, predictions_b == labels
    return Comparison(
        count=int(labels.numel()),
        a_right_b_wrong=torch.nonzero(right_a & ~right_b).flatten(),
        b_right_a_wrong=torch.nonzero(right_b & ~right_a).flatten(),
        both_wrong=torch.nonzero(~right_a & ~right_b).flatten(),
    )


def hardest_first(indices: Tensor, probabilities: Tensor) -> Tensor:
    """``indices`` reordered by the confidence of the model that got them wrong, most sure first.

    Args:
        indices: (n,) positions of examples a model gets wrong.
        probabilities: (N, K) that model's probabilities on all examples; its confidence in an
            example is its largest probability (the one of the class it predicted). Ties keep the
            order of ``indices``.
    """
    if indices.numel() == 0:
        return indices
    confidence = probabilities[indices].amax(dim=1)  # (n,)
    order = torch.sort(confidence, descending=True, stable=True).indices
    return indices[order]


def select_examples(loader: Iterable[Batch], indices: Sequence[int] | Tensor) -> Batch:
    """The images and labels at positions ``indices`` of the loader's order, in the order given.

    The loader is read once more, so it must yield the same examples in the same order as when
    the positions were found (a test loader, not shuffled).

    Returns:
        images Tensor[n, C, H, W] and labels Tensor[n].

    Raises:
        ValueError: a position is negative or beyond the loader's examples, or none is given.
    """
    wanted = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
    if not wanted:
        raise ValueError("no positions given to select")
    if min(wanted) < 0:
        raise ValueError(f"positions should be >= 0, got {min(wanted)}")
    found: dict[int, tuple[Tensor, Tensor]] = {}
    targets, start = set(wanted), 0
    for images, labels in loader:
        for i in range(labels.shape[0]):
            if start + i in targets:
                found[start + i] = (images[i], labels[i])
        start += labels.shape[0]
        if len(found) == len(targets):
            break
    missing = sorted(targets - found.keys())
    if missing:
        raise ValueError(f"position {missing[0]} is beyond the loader's {start} examples")
    return torch.stack([found[i][0] for i in wanted]), torch.stack([found[i][1] for i in wanted])
