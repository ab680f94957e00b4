"""``stnkit models``: the registered names, then the shipped pretrained weights."""

from __future__ import annotations

import dataclasses

import pytest

from stnkit import cli
from stnkit.models import list_models, list_pretrained, pretrained
from stnkit.models.pretrained import PRETRAINED

HEADER = "pretrained weights (name, dataset, test error recorded at the end of training):"


def _models_output(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], list[str]]:
    """The two sections of `stnkit models`: the model names, and the lines after the header."""
    assert cli.main(["models"]) == 0
    names, rest = capsys.readouterr().out.split("\n\n", 1)
    header, *rows = rest.splitlines()
    assert header == HEADER
    return names.splitlines(), rows


def test_the_first_section_is_one_model_name_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    names, _ = _models_output(capsys)
    assert names == list_models()


def test_every_shipped_weights_file_is_listed_with_its_dataset_and_recorded_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, rows = _models_output(capsys)
    assert [row.split()[0] for row in rows] == list_pretrained()
    for row in rows:
        name, dataset, error = row.split()
        entry = PRETRAINED[name]
        assert entry.test_error is not None
        assert (dataset, error) == (entry.dataset, f"{100 * entry.test_error:.2f}%")
    assert ["st-cnn-affine.rts", "rts", "0.68%"] in [row.split() for row in rows]


def test_a_missing_error_is_a_dash_and_an_empty_registry_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dataclasses.replace(PRETRAINED["st-cnn-affine.rts"], name="st-cnn-affine.x", test_error=None)
    monkeypatch.setattr(pretrained, "PRETRAINED", {entry.name: entry})
    assert _models_output(capsys)[1] == ["st-cnn-affine.x  rts  -"]
    monkeypatch.setattr(pretrained, "PRETRAINED", {})
    assert _models_output(capsys)[1] == ["(none shipped)"]
