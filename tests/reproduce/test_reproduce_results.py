"""Result files: what a finished cell records, reading them back (and refusing what is not one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stnkit.reproduce import (
    RESULT_VERSION,
    Cell,
    ResultFileError,
    cell_parameters,
    cell_result,
    cells_of,
    format_mean_sd,
    load_results,
    machine_facts,
    results_by_cell,
)

TC_CNN_PARAMETERS = cell_parameters(cells_of("tc", "tc-cnn")[0])


def _records() -> list[dict[str, float]]:
    # Three epochs of metrics.jsonl; the middle one did not evaluate (--eval-every 2), the last did.
    return [
        {"epoch": 1, "train_error": 0.5, "val_error": 0.4, "test_error": 0.3, "elapsed_s": 10.0, "images_per_s": 100.0},
        {"epoch": 2, "train_error": 0.3, "elapsed_s": 15.0, "images_per_s": 200.0},
        {"epoch": 3, "train_error": 0.2, "val_error": 0.1, "val_loss": 0.3, "test_error": 0.05, "elapsed_s": 25.0,
         "cpu_s": 48.0, "images_per_s": 300.0},
    ]  # fmt: skip


def _command(cell: Cell, seed: int) -> list[str]:
    """The arguments of ``stnkit`` that `stnkit reproduce` runs for the cell (where and how fast aside)."""
    return [
        "train",
        *cell.train_args(seed),
        "--threads",
        "2",
        "--out",
        f"runs/{cell.run_name(seed)}",
        "--no-progress",
    ]


def _result_text(cell: Cell, seed: int, changed: dict[str, object] | None = None) -> str:
    return json.dumps({**cell_result(cell, seed, _records(), _command(cell, seed)), **(changed or {})})


def test_cell_result_summarises_the_final_epoch_and_records_the_command() -> None:
    cell = cells_of("tc", "tc-st-cnn-affine")[0]
    command = ["train", "--dataset", "tc", "--model-kwargs", '{"a": 1}']
    result = cell_result(cell, 4, _records(), command)
    assert result["version"] == RESULT_VERSION and result["cell"] == "tc-st-cnn-affine"
    assert (result["seed"], result["epochs"], result["paper_error_percent"]) == (4, 3, 1.7)
    assert (result["final_test_error"], result["final_val_error"], result["wall_time_s"]) == (0.05, 0.1, 25.0)
    assert (result["final_val_loss"], result["cpu_time_s"]) == (0.3, 48.0)  # the last epoch's
    assert result["device"] == "cpu"
    assert cell_result(cell, 4, _records(), command, device="cuda:1")["device"] == "cuda"
    assert (
        cell.run_name(4) == "tc-st-cnn-affine-s4" and cell.run_name(4, "cuda:1") == "tc-st-cnn-affine-s4-cuda"
    )
    # A run that counted no CPU time and had no validation split records None for both.
    bare = [{k: v for k, v in r.items() if k not in ("cpu_s", "val_loss")} for r in _records()]
    assert (
        cell_result(cell, 4, bare, command)["cpu_time_s"],
        cell_result(cell, 4, bare, command)["final_val_loss"],
    ) == (None, None)
    assert result["curves"] == {
        "epoch": [1, 3], "val_error": [0.4, 0.1], "test_error": [0.3, 0.05], "train_error": [0.5, 0.2]
    }  # fmt: skip
    assert result["images_per_s"] == 200.0  # the mean over every epoch
    assert result["command"] == "stnkit train --dataset tc --model-kwargs '{\"a\": 1}'"  # shell-quoted
    assert set(result["machine"]) == {
        "cpu",
        "cpu_capability",
        "cores",
        "gpu",
        "torch",
        "python",
        "openmp_env",
    }
    json.dumps(result)  # JSON-ready


def test_machine_facts_record_the_openmp_variables_that_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND"):
        monkeypatch.delenv(name, raising=False)
    assert machine_facts()["openmp_env"] == {}
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("KMP_BLOCKTIME", "0")  # not libgomp's: not recorded
    assert machine_facts()["openmp_env"] == {"GOMP_SPINCOUNT": "10000", "OMP_WAIT_POLICY": "PASSIVE"}


def test_cell_result_records_the_runs_numerics() -> None:
    cell = cells_of("tc", "tc-st-cnn-affine")[0]

    def numerics(*used: str | None) -> object:
        records: list[dict[str, object]] = [dict(r) for r in _records()]
        for record, value in zip(records, used, strict=True):
            if value is not None:
                record["numerics"] = value
        return cell_result(cell, 0, records, ["train"])["numerics"]

    assert numerics("portable", "portable", "portable") == "portable"
    assert numerics("native", "native", "native") == "native"
    assert numerics(None, None, None) is None  # a run from before epochs recorded it
    assert numerics("native", "portable", "portable") == "mixed"  # resumed under other numerics
    assert numerics(None, "portable", "portable") == "mixed"  # resumed by newer code: first epoch unknown


def _write(folder: Path, grid: str, name: str, text: str) -> None:
    (folder / grid).mkdir(parents=True, exist_ok=True)
    (folder / grid / name).write_text(text)


def test_load_results_reads_the_grids_folders_only_in_name_order(tmp_path: Path) -> None:
    assert load_results(tmp_path / "missing") == []
    cell = cells_of("tc", "tc-cnn")[0]
    for seed in (1, 0):
        _write(tmp_path, "tc", f"tc-cnn-s{seed}.json", _result_text(cell, seed))
    _write(tmp_path, "keras", "run.json", '{"test_error": 0.01}')  # another experiment's file
    assert [r["seed"] for r in load_results(tmp_path)] == [0, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a readable result file"),
        ('{"version": 0, "cell": "tc-cnn"}', f"not a result file of this version ({RESULT_VERSION})"),
        ("[1, 2]", "not a result file of this version"),
        (
            f'{{"version": {RESULT_VERSION}, "cell": "tc-cnn", "grid": "tc", "seed": 0}}',
            "a result file without final_test_error, final_val_error, wall_time_s, machine",
        ),
    ],
    ids=["not-json", "old-version", "not-an-object", "fields-missing"],
)
def test_load_results_refuses_a_bad_file_in_one_line_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    _write(tmp_path, "tc", "tc-cnn-s0.json", text)
    with pytest.raises(ResultFileError) as caught:
        load_results(tmp_path)
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError see it too
    assert str(caught.value).startswith(f"{tmp_path / 'tc' / 'tc-cnn-s0.json'}: {message}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("final_test_error", "abc", "final_test_error must be a fraction in [0, 1], got 'abc'"),
        ("final_test_error", None, "final_test_error must be a fraction in [0, 1], got None"),
        ("final_test_error", 1.5, "final_test_error must be a fraction in [0, 1], got 1.5"),
        ("final_val_error", "abc", "final_val_error must be a fraction in [0, 1] or null, got 'abc'"),
        ("device", None, "device must be cpu or cuda, got None"),
        ("curves", {"train_error": 1, "x": "y" * 100}, "curves must be an object of lists"),
        ("seed", "x", "seed must be an integer, got 'x'"),
        ("grid", "nope", "grid must be a grid name, got 'nope'"),
        ("wall_time_s", "x", "wall_time_s must be seconds >= 0, got 'x'"),
        ("machine", {}, 'machine must be an object with a "cpu" name and a "cores" count, got {}'),
        ("machine", "x", 'machine must be an object with a "cpu" name and a "cores" count, got \'x\''),
        ("machine", {"cpu": "Some CPU"}, 'machine must be an object with a "cpu" name and a "cores" count'),
        ("curves", [1], "curves must be an object of lists"),
        (
            "curves",
            {"train_error": [0.1, float("nan")]},
            "curves must be an object of lists of finite numbers",
        ),
        ("curves", {"train_error": [0.1, "0.2"]}, "curves must be an object of lists of finite numbers"),
        ("device", "gpu", "device must be cpu or cuda, got 'gpu'"),
        ("parameters", "204k", "parameters must be a count >= 0 or null, got '204k'"),
        ("parameters", True, "parameters must be a count >= 0 or null, got True"),
    ],
)
def test_load_results_refuses_a_field_of_the_wrong_type_naming_file_and_field(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    _write(tmp_path, "tc", "tc-cnn-s0.json", _result_text(cells_of("tc", "tc-cnn")[0], 0, {field: value}))
    with pytest.raises(ResultFileError) as caught:
        load_results(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'tc' / 'tc-cnn-s0.json'}: {message}")
    assert "\n" not in str(caught.value) and "y" * 60 not in str(caught.value)  # long values cut


def test_load_results_reads_back_what_cell_result_wrote_for_every_cell(tmp_path: Path) -> None:
    cells = cells_of("all")
    for cell in cells:
        recorded = (
            {"parameters": cell_parameters(cell)} if cell.grid == "tc" else {}
        )  # with a count or without
        _write(tmp_path, cell.grid, f"{cell.run_name(2)}.json", _result_text(cell, 2, recorded))
    assert len(load_results(tmp_path)) == len(cells)


@pytest.mark.parametrize(
    ("name", "changed", "message"),
    [
        # A copy under another name would count the run twice.
        ("tc-cnn-s0-copy.json", {}, "holds tc-cnn seed 0 (cpu), whose file is tc/tc-cnn-s0.json"),
        ("tc-cnn-s1.json", {}, "holds tc-cnn seed 0 (cpu), whose file is tc/tc-cnn-s0.json"),
        ("tc-cnn-s0.json", {"device": "cuda"}, "holds tc-cnn seed 0 (cuda), whose file is tc/tc-cnn-s0-cuda.json"),
        # A cell renamed or removed from the grid would drop out of the page without a word.
        ("tc-cnn-old-s0.json", {"cell": "tc-cnn-old"}, "cell 'tc-cnn-old' is no cell of grid tc today (renamed or removed? move the file away)"),
        ("tc-cnn-s0.json", {"grid": "table1"}, "cell 'tc-cnn' is no cell of grid table1 today (renamed or removed? move the file away)"),
        # Another recipe's run under the cell's name would enter its row silently.
        ("tc-cnn-s0.json", {"recipe": "adam100-val10k"}, "trained by recipe 'adam100-val10k', but cell tc-cnn trains by 'adam20-val10k'"),
        (
            "tc-cnn-s0.json",
            {"command": "stnkit train --dataset tc --model cnn --seed 0 --epochs 100 --val-size 10000 --threads 2"},
            "its command trains --dataset tc --model cnn --seed 0 --epochs 100 --val-size 10000, but cell tc-cnn "
            "seed 0 is: stnkit train --dataset tc --model cnn --seed 0 --epochs 20 --val-size 10000",
        ),
        ("tc-cnn-s0.json", {"command": "python train.py"}, "command must be a `stnkit train` command, got 'python train.py'"),
        # The cell's architecture changed since the run: its seeds would mix two models in one row.
        ("tc-cnn-s0.json", {"parameters": 1234}, f"it trained a model of 1,234 parameters, but cell tc-cnn's model has {TC_CNN_PARAMETERS:,} today (its architecture changed: rerun the cell)"),
    ],
    ids=["copy", "seed-not-its-name", "gpu-under-cpu-name", "unknown-cell", "other-grid", "other-recipe",
         "other-command", "not-stnkit", "other-architecture"],
)  # fmt: skip
def test_load_results_refuses_a_file_that_disagrees_with_its_cell(
    tmp_path: Path, name: str, changed: dict[str, object], message: str
) -> None:
    _write(tmp_path, "tc", name, _result_text(cells_of("tc", "tc-cnn")[0], 0, changed))
    with pytest.raises(ResultFileError) as caught:
        load_results(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'tc' / name}: {message}"


def test_a_run_with_model_arguments_is_checked_against_the_cells() -> None:
    kernels = cells_of("table1", "rts-cnn-paper-kernels")[0]
    assert kernels.train_args(1)[-2:] == ["--model-kwargs", '{"kernel_sizes": [9, 7], "crop_to": null}']


def test_a_result_written_before_place_arguments_moved_still_reads(tmp_path: Path) -> None:
    # Commands recorded before 2026-12-06 put --threads, --out and --no-progress before the recipe's flags.
    cell = cells_of("table1", "rts-cnn-paper-kernels")[0]
    command = (
        "stnkit train --dataset rts --model cnn --seed 0 --threads 2 --out runs/x --no-progress --epochs 20 "
        '--val-size 10000 --model-kwargs \'{"kernel_sizes": [9, 7], "crop_to": null}\' --data-root /d'
    )
    _write(tmp_path, "table1", "rts-cnn-paper-kernels-s0.json", _result_text(cell, 0, {"command": command}))
    assert [r["seed"] for r in load_results(tmp_path)] == [0]


def test_results_by_cell_groups_by_grid_and_cell_in_seed_order() -> None:
    results = [
        {"grid": "tc", "cell": "tc-cnn", "seed": 2},
        {"grid": "mnist", "cell": "mnist-cnn", "seed": 0},
        {"grid": "tc", "cell": "tc-cnn", "seed": 0},
    ]
    grouped = results_by_cell(results)
    assert list(grouped) == [("tc", "tc-cnn"), ("mnist", "mnist-cnn")]
    assert [r["seed"] for r in grouped["tc", "tc-cnn"]] == [0, 2]


def test_format_mean_sd_in_percent() -> None:
    assert format_mean_sd([0.004, 0.006]) == "0.50 ± 0.14"
    assert format_mean_sd([0.01, 0.02, 0.03]) == "2.00 ± 1.00"
    assert format_mean_sd([0.0125]) == "1.25"  # one seed: no spread to show
    with pytest.raises(ValueError, match="at least one error"):
        format_mean_sd([])
