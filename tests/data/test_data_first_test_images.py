"""first_test_images: the fixed batch of pictures is the head of the canonical test set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stnkit.data import first_test_images, make_loader


def test_first_test_images_are_the_canonical_test_sets_first(shared_data: Path) -> None:
    images = first_test_images("rts", 5, root=shared_data)
    loader = make_loader("rts", split="test", batch_size=16, root=shared_data, limit=16)
    head, _ = next(iter(loader))
    assert images.shape == (5, 1, 42, 42) and images.dtype == torch.float32
    assert torch.equal(images, head[:5])  # the same images whatever the batch they were made in


def test_first_test_images_needs_a_count_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        first_test_images("rts", 0)
