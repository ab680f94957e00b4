"""The grids: the paper's cells and numbers, their order, the recipes, selecting cells by name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stnkit.data import parse_augment
from stnkit.reproduce import (
    DEFAULT_RECIPE,
    GRIDS,
    HEADLINE_MODELS,
    LONG_FCN_RECIPE,
    RECIPES,
    Cell,
    cells_of,
    is_selection,
)


def test_table1_has_every_paper_cell_headline_first() -> None:
    cells = cells_of("table1")
    # The paper's 32 cells, the paper-kernels rows of the RTS CNN and ST-CNN, then the longer-schedule
    # lever of each of the 16 FCN-family cells.
    assert len(cells) == 4 * 8 + 2 + 16 and len({cell.name for cell in cells}) == 50
    assert [cell.model for cell in cells[:8]] == ["cnn", "st-cnn-affine"] * 4
    # The paper-kernels rows come after the paper's cells; their standing rows keep their places.
    lever, st_lever = cells[32], cells[33]
    assert (lever.name, lever.paper_error) == ("rts-cnn-paper-kernels", 0.8)
    assert (st_lever.name, st_lever.paper_error) == ("rts-st-cnn-affine-paper-kernels", 0.5)
    assert lever.model_kwargs == st_lever.model_kwargs == {"kernel_sizes": [9, 7], "crop_to": None}
    assert lever.model_kwargs is not st_lever.model_kwargs
    assert not st_lever.is_headline
    assert cells[0].name == "rts-cnn" and cells[0].model_kwargs == {}
    rts = {cell.model: cell.paper_error for cell in cells if cell.dataset == "rts"}
    assert rts["st-cnn-affine"] == 0.5 and rts["cnn"] == 0.8 and rts["fcn"] == 5.2
    assert [cell.name for cell in cells_of("all", "tc-*")] == [
        "tc-fcn", "tc-cnn", "tc-st-fcn-affine", "tc-st-cnn-affine", "tc-fcn-e100", "tc-st-fcn-affine-e100"
    ]  # fmt: skip


def test_every_fcn_family_cell_has_a_longer_schedule_lever_after_the_paper_cells() -> None:
    for grid in ("table1", "tc", "addition"):
        cells = cells_of(grid)
        levers = [cell for cell in cells if cell.tag == "e100"]
        fcn_family = [cell for cell in cells if "fcn" in cell.model and not cell.tag]
        assert [(c.dataset, c.model, c.paper_error) for c in levers] == [
            (c.dataset, c.model, c.paper_error) for c in fcn_family
        ]
        # After the paper's cells: only a lever of a lever (addition's own-loc row) may follow them.
        later = [cell for cell in cells if cell.tag.startswith("e100")]
        assert cells[-len(later) :] == later and later[: len(levers)] == levers
        assert all(c.recipe is LONG_FCN_RECIPE and not c.is_headline for c in levers)
    # Only the number of epochs differs from the default recipe.
    assert LONG_FCN_RECIPE.flags == ("--epochs", "100", *DEFAULT_RECIPE.flags[2:])
    assert DEFAULT_RECIPE.flags[:2] == ("--epochs", "20")


def test_gtsrb_grid_selects_on_validation_then_trains_on_everything() -> None:
    cells = cells_of("gtsrb")
    names = [cell.name for cell in cells]
    assert names[:3] == ["gtsrb-st-cnn-select", "gtsrb-st-cnn", "gtsrb-cnn"]
    assert len(set(names)) == len(names)
    for cell in cells:
        flags = cell.recipe.flags
        assert ("--val-size" in flags) == is_selection(cell)
        norm = {"local_contrast": True} if cell.tag.startswith("lcn") else {"standardize": True}
        assert cell.model_kwargs.items() >= norm.items()
        assert set(cell.model_kwargs) <= {*norm, "channels"}
    assert cells_of("all", "gtsrb-cnn*") == [cells[2], cells[3]]
    # Variants of one model are told apart by their tag, and judged on validation first.
    assert [c.name for c in cells if c.model_kwargs.get("local_contrast")] == ["gtsrb-st-cnn-lcn-select"]
    # The larger validation split repeats the standing recipe before the alternative it is for.
    val10k = [c for c in cells if c.recipe.flags[-2:] == ("--val-size", "10000")]
    assert [c.name for c in val10k] == [
        "gtsrb-st-cnn-val10k-select", "gtsrb-multi-st-cnn-val10k-select",
        "gtsrb-st-cnn-persp-val10k-select", "gtsrb-st-cnn-wd-val10k-select",
        "gtsrb-st-cnn-wide-val10k-select",
    ]  # fmt: skip
    assert all(is_selection(c) for c in val10k)
    assert all(c.recipe.flags[:-2] == cells[0].recipe.flags[:-2] for c in val10k[:2])
    # The perspective lever changes the augmentation only: the preset plus a perspective jitter.
    standing, lever = list(cells[0].recipe.flags[:-2]), list(val10k[2].recipe.flags[:-2])
    at = standing.index("--augment") + 1
    assert parse_augment(lever[at]) == replace(parse_augment(standing[at]), perspective=0.1)
    assert lever[:at] + lever[at + 1 :] == standing[:at] + standing[at + 1 :]
    # The weight-decay lever adds the optimiser's flags and changes nothing else.
    assert list(val10k[3].recipe.flags[:-2]) == [*standing, "--optimizer", "adamw", "--weight-decay", "0.05"]
    # The wide lever changes the conv widths only, under the standing recipe.
    assert val10k[4].recipe == val10k[0].recipe
    assert val10k[4].model_kwargs == {"standardize": True, "channels": [48, 96, 192]}


def test_addition_runs_the_two_transformer_fcn_with_each_transform() -> None:
    models = [cell.model for cell in cells_of("addition") if not cell.tag]
    assert models[-3:] == ["2xst-fcn-affine", "2xst-fcn-projective", "2xst-fcn-tps"]
    assert [cell.paper_error for cell in cells_of("addition", "*2xst*")] == [5.8, None, None] * 2 + [5.8]
    # The last lever: the affine pair with a localisation net per head, 100 epochs, after the rest.
    last = cells_of("addition")[-1]
    assert (last.name, last.recipe.name) == ("mnist-add-2xst-fcn-affine-e100-own-loc", "adam100-val10k")
    assert last.model_kwargs == {"shared_localization": False} and not last.is_headline


def test_cell_names_are_unique_and_every_recipe_is_registered() -> None:
    cells = cells_of("all")
    assert len(cells) == sum(len(grid) for grid in GRIDS.values())
    assert len({(cell.grid, cell.name) for cell in cells}) == len(cells)
    assert all(RECIPES[cell.recipe.name] is cell.recipe for cell in cells)
    assert {cell.model for cell in GRIDS["mnist"]} == set(HEADLINE_MODELS)


def test_a_cell_is_named_by_dataset_model_and_tag() -> None:
    assert Cell("tc", "tc", "st-cnn-affine", 1.7).run_name(2) == "tc-st-cnn-affine-s2"
    # A model named after its dataset is not prefixed twice.
    assert Cell("gtsrb", "gtsrb", "gtsrb-cnn", None, tag="select").name == "gtsrb-cnn-select"


def test_an_unknown_grid_is_a_one_line_error_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown grid 'table9'; valid: \['table1', .*'all'\]"):
        cells_of("table9")
    assert cells_of("tc", "nothing-*") == []  # a pattern that matches nothing is no error
