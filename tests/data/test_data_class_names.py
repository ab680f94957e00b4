"""Class names: one per label for every dataset; GTSRB's 43 short sign names."""

from __future__ import annotations

import pytest

from stnkit import data


@pytest.mark.parametrize("name", data.list_datasets())
def test_one_name_per_class(name: str) -> None:
    names = data.class_names(name)
    assert len(names) == data.dataset_info(name).num_classes
    assert len(set(names)) == len(names)


def test_gtsrb_names() -> None:
    names = data.class_names("gtsrb")
    assert names is data.GTSRB_CLASS_NAMES and data.class_names("gtsrb48") == names
    assert (names[0], names[14], names[17], names[42]) == (
        "limit 20",
        "stop",
        "no entry",
        "end of no overtaking by trucks",
    )
    assert max(len(n) for n in names) <= 32  # short enough for the rows of a 43-class confusion picture


def test_digits_are_their_own_names() -> None:
    assert data.class_names("rts") == tuple("0123456789")
    assert data.class_names("mnist-add")[18] == "18"
    with pytest.raises(ValueError, match="unknown dataset"):
        data.class_names("cifar")
