"""Result files: what a finished cell records, reading them back (and refusing what is not one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stnkit.reproduce import (
    RESULT_VERSION,
    ResultFileError,
    cell_result,
    cells_of,
    format_mean_sd,
    load_results,
    machine_facts,
    results_by_cell,
)


def _records() -> list[dict[str, float]]:
    # Three epochs of metrics.jsonl; the middle one did not evaluate (--eval-every 2), the last did.
    return [
        {"epoch": 1, "train_error": 0.5, "val_error": 0.4, "test_error": 0.3, "elapsed_s": 10.0, "images_per_s": 100.0},
        {"epoch": 2, "train_error": 0.3, "elapsed_s": 15.0, "images_per_s": 200.0},
        {"epoch": 3, "train_error": 0.2, "val_error": 0.1, "val_loss": 0.3, "test_error": 0.05, "elapsed_s": 25.0,
         "cpu_s": 48.0, "images_per_s": 300.0},
    ]  # fmt: skip


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
        _write(
            tmp_path, "tc", f"tc-cnn-s{seed}.json", json.dumps(cell_result(cell, seed, _records(), ["train"]))
        )
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
        ("machine", {}, 'machine must be an object with a "cpu" name, got {}'),
        ("machine", "x", "machine must be an object with a \"cpu\" name, got 'x'"),
        ("curves", [1], "curves must be an object of lists"),
        ("device", "gpu", "device must be cpu or cuda, got 'gpu'"),
    ],
)
def test_load_results_refuses_a_field_of_the_wrong_type_naming_file_and_field(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    result = cell_result(cells_of("tc", "tc-cnn")[0], 0, _records(), ["train"])
    _write(tmp_path, "tc", "tc-cnn-s0.json", json.dumps({**result, field: value}))
    with pytest.raises(ResultFileError) as caught:
        load_results(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'tc' / 'tc-cnn-s0.json'}: {message}")
    assert "\n" not in str(caught.value) and "y" * 60 not in str(caught.value)  # long values cut


def test_load_results_refuses_two_files_of_one_cell_seed_and_device(tmp_path: Path) -> None:
    result = json.dumps(cell_result(cells_of("tc", "tc-cnn")[0], 0, _records(), ["train"]))
    _write(tmp_path, "tc", "tc-cnn-s0.json", result)
    _write(tmp_path, "tc", "tc-cnn-s0-copy.json", result)
    with pytest.raises(ResultFileError, match="a second result of tc-cnn seed 0 \\(cpu\\), after"):
        load_results(tmp_path)


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
