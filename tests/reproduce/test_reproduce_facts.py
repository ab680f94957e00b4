"""The numbers of the report's prose, computed from result files and the grids."""

from __future__ import annotations

import pytest

from stnkit.reproduce import cells_of
from stnkit.reproduce.facts import (
    FitSummary,
    cpu_per_wall,
    fcn_family_fit,
    head_widths,
    parameter_spreads,
    training_budget,
    training_errors,
)


def test_the_papers_training_against_our_recipes() -> None:
    budget = training_budget()
    # 150k x 256 images against 20 (or 100) epochs of 50,000 images; 20 x ceil(50,000 / 128) = 7,820 steps.
    assert budget.updates == pytest.approx(150_000 / 7_820)
    assert budget.images == pytest.approx(38.4) and budget.images_long == pytest.approx(7.68)


def test_parameter_spreads_follow_the_counts_they_are_given() -> None:
    def count(cell) -> int:  # every model 100 parameters, but each ST-CNN 110 and each 2xST-FCN 150
        return 110 if cell.model.startswith("st-cnn") else 150 if cell.model.startswith("2x") else 100

    spreads = parameter_spreads(count)
    assert spreads.cnn_family == pytest.approx(0.10) and spreads.fcn_family == 0.0
    assert spreads.second_transformer == pytest.approx(0.5) and spreads.own_localisation == 0.0


def _run(seed: int, cpu: float | None, wall: float, policy: str | None = None, **extra: object) -> dict:
    machine = {"cpu": "Some CPU", "cores": 2}
    if policy is not None:
        machine["openmp_env"] = {"OMP_WAIT_POLICY": policy}
    return {"seed": seed, "cpu_time_s": cpu, "wall_time_s": wall, "machine": machine, **extra}


def test_cpu_per_wall_parts_runs_by_the_recorded_wait_policy() -> None:
    runs = [
        _run(0, 190.0, 100.0), _run(1, 170.0, 100.0, policy=""),  # spinning: not recorded, or the default
        _run(2, 110.0, 100.0, policy="passive"), _run(3, None, 100.0),  # no CPU time: left out
        _run(4, 10.0, 10.0, device="cuda"),  # GPU runs: left out
    ]  # fmt: skip
    assert cpu_per_wall(runs) == {"spinning": (1.7, 1.9, 2), "passive": (1.1, 1.1, 1)}


def test_fcn_family_fit_reads_seed_0_of_the_standing_fcn_family_cells() -> None:
    def run(cell, train: float, val: list[float], seed: int = 0) -> dict:
        curves = {"train_error": [0.5, train], "val_error": val}
        return {"grid": cell.grid, "cell": cell.name, **_run(seed, None, 60.0 * len(val)), "curves": curves}

    falling = [0.09, 0.08, 0.07, 0.06, 0.05, 0.04]  # 5 points over the last five epochs
    r_fcn, e_fcn = cells_of("table1", "r-fcn")[0], cells_of("table1", "e-fcn")[0]
    by_cell = {
        ("table1", "r-fcn"): [run(r_fcn, 0.03, falling)],  # training 1 point below validation
        ("table1", "e-fcn"): [run(e_fcn, 0.05, [0.05] * 5 + [0.045]), run(e_fcn, 0.0, falling, seed=1)],
        ("table1", "r-cnn"): [run(cells_of("table1", "r-cnn")[0], 0.0, falling)],  # not an FCN
        ("table1", "r-fcn-e100"): [run(cells_of("table1", "r-fcn-e100")[0], 0.0, falling)],  # a lever
    }
    fit = fcn_family_fit(by_cell)
    assert fit == FitSummary(2, pytest.approx(1.0), 1, (pytest.approx(0.5), pytest.approx(5.0)), (60.0, 60.0))
    assert fcn_family_fit({}) is None


def test_training_errors_are_the_range_over_runs_or_none() -> None:
    runs = [{"curves": {"train_error": [0.5, 0.016]}}, {"curves": {"train_error": [0.5, 0.017]}}]
    assert training_errors(runs) == (pytest.approx(1.6), pytest.approx(1.7))
    assert training_errors([*runs, {"curves": {}}]) is None and training_errors([]) is None


def test_head_widths_are_the_classifiers_first_linear_layer() -> None:
    # The cropping RTS CNN: 64 maps of 7x7 into 49 hidden units; the paper's kernels without the crop:
    # 64 maps of 5x5 into 141 (each matched to its ST-CNN's parameter budget).
    assert head_widths(cells_of("table1", "rts-cnn")[0]) == (3136, 49)
    assert head_widths(cells_of("table1", "rts-cnn-paper-kernels")[0]) == (1600, 141)
