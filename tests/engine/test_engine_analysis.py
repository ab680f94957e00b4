"""Per-example predictions: predict, per-class errors, confusion matrix, two models compared, selection."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from stnkit.engine import (
    ClassErrors,
    compare_predictions,
    confusion_matrix,
    evaluate,
    format_class_table,
    hardest_first,
    per_class_errors,
    predict,
    predict_ensemble,
    predict_views,
    select_examples,
)

# Eight images whose first pixel holds their true class; the fake model below answers from that
# pixel through a fixed table, so every prediction is known by hand.
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
ANSWER = {0: 0, 1: 2, 2: 2}  # true class -> the fake model's answer: class 1 is always taken for 2


class TableModel(nn.Module):
    """Predicts ``ANSWER[pixel]``, except for the images whose second pixel is 1 (then class 0)."""

    def forward(self, images: Tensor) -> Tensor:  # (B, 1, 2, 2) -> (B, 3)
        true = images[:, 0, 0, 0].long()
        answer = torch.tensor([ANSWER[int(t)] for t in true])
        answer = torch.where(images[:, 0, 0, 1] == 1, torch.zeros_like(answer), answer)
        return 5.0 * nn.functional.one_hot(answer, 3).float()


def _batches(labels: Tensor, flip: set[int] = frozenset(), batch: int = 3) -> list[tuple[Tensor, Tensor]]:
    images = torch.zeros(len(labels), 1, 2, 2)
    images[:, 0, 0, 0] = labels.float()
    for i in flip:
        images[i, 0, 0, 1] = 1.0
    return [(images[i : i + batch], labels[i : i + batch]) for i in range(0, len(labels), batch)]


def test_predict_keeps_every_example_in_order() -> None:
    got = predict(TableModel(), _batches(LABELS, flip={6}))
    assert torch.equal(got.labels, LABELS)
    # By hand: class 0 right; class 1 -> 2 (both wrong); class 2 right but image 6 -> 0.
    assert got.predictions.tolist() == [0, 0, 0, 2, 2, 2, 0, 2]
    assert torch.allclose(got.probabilities.sum(dim=1), torch.ones(8))


def test_per_class_counts_by_hand() -> None:
    got = predict(TableModel(), _batches(LABELS, flip={6}))
    rows = per_class_errors(got.labels, got.predictions, 4)  # class 3 has no images
    assert [(r.label, r.count, r.errors) for r in rows] == [(0, 3, 0), (1, 2, 2), (2, 3, 1), (3, 0, 0)]
    assert [r.error for r in rows] == [0.0, 1.0, 1 / 3, None]
    names = ["zero", "one", "two", "three"]
    assert rows[2].to_dict(names) == {
        "label": 2, "name": "two", "count": 3, "errors": 1, "error": 1 / 3,
        "mistaken_for": [{"label": 0, "name": "zero", "count": 1}],
    }  # fmt: skip
    with pytest.raises(TypeError, match="not one string"):
        rows[2].to_dict("two")
    matrix = confusion_matrix(got.labels, got.predictions, 3)
    assert matrix.tolist() == [[3, 0, 0], [0, 0, 2], [1, 0, 2]]


def test_metrics_from_predictions_agree_with_evaluate() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    batches = [(torch.randn(5, 1, 2, 2), torch.randint(0, 3, (5,))) for _ in range(4)]
    ours, theirs = predict(model, batches).metrics(), evaluate(model, batches)
    assert ours["count"] == theirs["count"] == 20
    assert ours["accuracy"] == theirs["accuracy"] and ours["error"] == theirs["error"]
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-6)


def test_predict_restores_the_training_mode() -> None:
    model = TableModel().train()
    predict(model, _batches(LABELS))
    assert model.training


def test_per_class_errors_and_confusion_match_a_brute_force_count() -> None:
    g = torch.Generator().manual_seed(3)
    labels, predictions = torch.randint(0, 7, (500,), generator=g), torch.randint(0, 7, (500,), generator=g)
    matrix = confusion_matrix(labels, predictions, 7)
    rows = per_class_errors(labels, predictions, 7)
    for k in range(7):
        for j in range(7):
            assert matrix[k, j] == sum(
                1 for t, p in zip(labels.tolist(), predictions.tolist()) if (t, p) == (k, j)
            )
        members = [p for t, p in zip(labels.tolist(), predictions.tolist()) if t == k]
        assert (rows[k].count, rows[k].errors) == (len(members), sum(p != k for p in members))
        taken_for = {j: members.count(j) for j in set(members) - {k}}
        assert dict(rows[k].mistaken_for) == taken_for
        assert [count for _, count in rows[k].mistaken_for] == sorted(taken_for.values(), reverse=True)


def test_class_errors_say_what_the_errors_were_taken_for() -> None:
    labels, predictions = torch.tensor([0, 0, 0, 0, 1, 2]), torch.tensor([2, 1, 2, 0, 1, 0])
    rows = per_class_errors(labels, predictions, 3)
    assert rows[0].mistaken_for == ((2, 2), (1, 1)) and rows[1].mistaken_for == ()
    assert rows[0].to_dict(["zero", "one", "two"])["mistaken_for"] == [
        {"label": 2, "name": "two", "count": 2},
        {"label": 1, "name": "one", "count": 1},
    ]
    assert rows[2].to_dict()["mistaken_for"] == [{"label": 0, "count": 1}]


def test_compare_predictions_matches_a_brute_force_split() -> None:
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 5, (300,), generator=g)
    a, b = torch.randint(0, 5, (300,), generator=g), torch.randint(0, 5, (300,), generator=g)
    a[:100], b[100:200] = labels[:100], labels[100:200]  # plenty of each group
    got = compare_predictions(labels, a, b).to_dict()
    triples = list(zip(labels.tolist(), a.tolist(), b.tolist()))
    expected = {
        "a_right_b_wrong": [i for i, (t, x, y) in enumerate(triples) if x == t and y != t],
        "b_right_a_wrong": [i for i, (t, x, y) in enumerate(triples) if y == t and x != t],
        "both_wrong": [i for i, (t, x, y) in enumerate(triples) if x != t and y != t],
    }
    assert got == {"count": 300, **{k: {"count": len(v), "indices": v} for k, v in expected.items()}}


def test_hardest_first_orders_by_the_wrong_models_confidence() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.5, 0.5]])
    assert hardest_first(torch.tensor([1, 2, 4, 0]), probabilities).tolist() == [0, 2, 1, 4]
    assert hardest_first(torch.tensor([3, 2]), torch.tensor([[0.0]] * 2 + [[0.7]] * 2)).tolist() == [
        3,
        2,
    ]  # ties
    assert hardest_first(torch.zeros(0, dtype=torch.long), probabilities).numel() == 0


def test_select_examples_reads_positions_across_batches() -> None:
    batches = _batches(LABELS, batch=3)
    images, labels = select_examples(batches, [7, 0, 4])
    assert labels.tolist() == [LABELS[7], LABELS[0], LABELS[4]]
    assert images[:, 0, 0, 0].tolist() == [float(v) for v in labels.tolist()]
    with pytest.raises(ValueError, match="position 8 is beyond the loader's 8 examples"):
        select_examples(batches, [1, 8])


def test_format_class_table() -> None:
    rows = [ClassErrors(label=0, count=4, errors=1), ClassErrors(label=1, count=0, errors=0)]
    assert format_class_table(rows, ["zero", "one"]).splitlines() == [
        "| class | name | images | errors | error % |",
        "|---|---|---|---|---|",
        "| 0 | zero | 4 | 1 | 25.00 |",
        "| 1 | one | 0 | 0 | - |",
    ]
    assert format_class_table(rows).splitlines()[0] == "| class | images | errors | error % |"


@pytest.mark.parametrize(
    ("labels", "predictions", "message"),
    [
        (torch.tensor([0, 1]), torch.tensor([0]), "2 labels but 1 predictions"),
        (
            torch.tensor([0, 5]),
            torch.tensor([0, 1]),
            r"labels should lie in \[0, 2\], got values from 0 to 5",
        ),
        (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), "1-D integer tensor"),
        (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), "1-D integer tensor"),
    ],
)
def test_bad_input_gets_a_one_line_error(labels: Tensor, predictions: Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        confusion_matrix(labels, predictions, 3)
    assert "\n" not in str(info.value)


def test_predict_refuses_an_empty_loader() -> None:
    with pytest.raises(ValueError, match="no batches"):
        predict(TableModel(), [])


# --- test-time augmentation --------------------------------------------------------------------------


def test_predict_views_with_the_identity_alone_is_predict() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    batches = [(torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])) for _ in range(2)]
    plain, viewed = predict(model, batches), predict_views(model, batches, [lambda images: images])
    assert torch.equal(viewed.labels, plain.labels)
    assert torch.allclose(viewed.probabilities, plain.probabilities, atol=1e-6)
    assert viewed.metrics() == pytest.approx(plain.metrics())


def test_predict_views_averages_the_probabilities_of_every_view() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    batches = [
        (torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 2])),
        (torch.randn(3, 1, 2, 2), torch.tensor([1, 1, 0])),
    ]
    views = [lambda x: x, lambda x: x.flip(-1), lambda x: 2 * x]
    by_view = [predict(model, [(view(x), y) for x, y in batches]).probabilities for view in views]
    got = predict_views(model, batches, views)
    assert torch.allclose(got.probabilities, torch.stack(by_view).mean(dim=0), atol=1e-6)
    expected_loss = -torch.stack(by_view).mean(dim=0).log().gather(1, got.labels[:, None]).mean()
    assert got.metrics()["loss"] == pytest.approx(float(expected_loss), rel=1e-5)


def test_predict_views_can_turn_a_wrong_answer_right() -> None:
    # Image 6 is taken for class 0 when its second pixel is 1; a view that clears it fixes the answer
    # only if that view outweighs the original: two clearing views against one.
    clear = lambda x: torch.cat((x[..., :1], torch.zeros_like(x[..., 1:2]), x[..., 2:]), dim=-1)  # noqa: E731
    batches = _batches(LABELS, flip={6})
    assert predict_views(TableModel(), batches, [lambda x: x]).predictions[6] == 0
    assert predict_views(TableModel(), batches, [lambda x: x, clear, clear]).predictions[6] == 2


def test_predict_views_refuses_no_views_and_views_that_change_the_shape() -> None:
    batches = _batches(LABELS)
    with pytest.raises(ValueError, match="views is empty"):
        predict_views(TableModel(), batches, [])
    with pytest.raises(ValueError, match=r"a view must keep the batch's shape \[3, 1, 2, 2\]"):
        predict_views(TableModel(), batches, [lambda x: x[:, :, :1]])


def test_predict_ensemble_averages_the_models_and_their_views() -> None:
    torch.manual_seed(1)
    models = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(3)]
    batches = [
        (torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 2])),
        (torch.randn(2, 1, 2, 2), torch.tensor([1, 0])),
    ]
    each = torch.stack([predict(model, batches).probabilities for model in models])  # (3, N, K)
    got = predict_ensemble(models, batches)
    assert torch.allclose(got.probabilities, each.mean(dim=0), atol=1e-6)
    assert torch.equal(got.labels, torch.tensor([0, 1, 2, 2, 1, 0]))
    views = [lambda x: x, lambda x: x.flip(-2)]
    each_view = torch.stack(
        [predict_views(model, batches, [view]).probabilities for model in models for view in views]
    )
    assert torch.allclose(
        predict_ensemble(models, batches, views).probabilities, each_view.mean(dim=0), atol=1e-6
    )
    assert torch.allclose(predict_ensemble(models[:1], batches).probabilities, each[0], atol=1e-6)


class _Reshuffling:
    """A loader that gives other labels on every pass (as a shuffling loader would)."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        yield torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]).roll(self.passes)


def test_predict_ensemble_refuses_no_models_and_a_loader_that_changes() -> None:
    with pytest.raises(ValueError, match="models is empty"):
        predict_ensemble([], _batches(LABELS))
    with pytest.raises(ValueError, match="views is empty"):
        predict_ensemble([TableModel()], _batches(LABELS), [])
    with pytest.raises(ValueError, match="the loader gave other labels for model 2 than for model 1"):
        predict_ensemble([TableModel(), TableModel()], _Reshuffling())
