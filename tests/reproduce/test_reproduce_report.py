"""The report: the paper-style tables, the GTSRB and plain-MNIST sections, the pictures' bookkeeping.

Drawing a real transformer is tested end to end through the command (tests/cli/test_cli_reproduce.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from stnkit.reproduce import CAPTIONS_NAME, Cell, cells_of, render_pictures, render_report
from stnkit.reproduce.report import _picture_seed


def _result(cell: Cell, seed: int, val: float | None, test: float) -> dict[str, object]:
    return {
        "grid": cell.grid, "cell": cell.name, "seed": seed, "final_val_error": val,
        "final_test_error": test, "wall_time_s": 600.0,
        "machine": {"cpu": "Some CPU", "cores": 2},
    }  # fmt: skip


def test_a_paper_row_shows_mean_sd_over_seeds_beside_the_paper() -> None:
    cnn = cells_of("tc", "tc-cnn")[0]
    report = render_report([_result(cnn, 1, None, 0.05), _result(cnn, 0, None, 0.04)])
    assert "| tc | cnn | 3.5 | 4.50 ± 0.71 | +1.00 | 0, 1 | 10.0 | Some CPU (2 cores) |" in report
    assert "| tc | fcn | 13.2 | not run yet | | | | |" in report
    assert "## What the transformers learned" not in report  # no pictures given: no section


def test_gtsrb_report_shows_validation_for_selection_and_test_for_final_runs() -> None:
    select, final = cells_of("gtsrb")[:2]
    results = [
        _result(select, 0, 0.0125, 0.0999),  # a selection run's test error must not appear
        _result(final, 0, None, 0.0040),
        _result(final, 1, None, 0.0060),
    ]
    report = render_report(results)
    section = report.split("## gtsrb")[1].split("\n## ")[0]
    select_row = next(line for line in section.splitlines() if line.startswith("| gtsrb-st-cnn | select"))
    assert "| 1.25 |" in select_row and "9.99" not in section and "not used" in select_row
    final_row = next(line for line in section.splitlines() if line.startswith("| gtsrb-st-cnn | final"))
    assert "| 0.50 ± 0.14 |" in final_row and "99.50%" in final_row and "| 0, 1 |" in final_row
    assert "| gtsrb-cnn | final | gtsrb-aug30 | not run yet" in section
    assert "## gtsrb" not in report.split("## gtsrb (traffic signs")[0]  # no generic table for it


def test_report_has_a_plain_mnist_section_without_paper_numbers() -> None:
    st = cells_of("mnist")[1]
    report = render_report([_result(st, 0, 0.009, 0.0080), _result(st, 1, 0.010, 0.0100)])
    title = "## plain MNIST (for the robustness figure; not in the paper's table)"
    assert report.count(title) == 1 and "\n## mnist\n" not in report  # its own section, not a paper table
    section = report.split(title)[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| mnist |")]
    assert rows == [
        "| mnist | cnn |  | not run yet | | | | |",
        "| mnist | st-cnn-affine |  | 0.90 ± 0.14 |  | 0, 1 | 10.0 | Some CPU (2 cores) |",
    ]
    # The paper's table 1 rows keep their paper numbers; the plain-MNIST result appears nowhere else.
    assert "| rts | cnn | 0.8 | not run yet |" in report and report.count("0.90 ± 0.14") == 1


def test_the_picture_comes_from_a_finished_run_seed_0_first() -> None:
    assert _picture_seed([0, 1, 2], finished={0, 1, 2}) == 0
    assert _picture_seed([0, 1, 2], finished={1, 2}) == 1
    assert _picture_seed([1, 2], finished=set()) == 1
    assert _picture_seed([0, 2], finished={2}) == 2


def test_a_picture_whose_run_folder_is_gone_stays_in_the_report(tmp_path: Path) -> None:
    image_dir = tmp_path / "img" / "paper"
    image_dir.mkdir(parents=True)
    (image_dir / "rts-st-cnn-affine.png").write_bytes(b"\x89PNG drawn by an earlier render")
    caption = "st-cnn-affine on rts, seed 0, epoch 20"
    (image_dir / CAPTIONS_NAME).write_text(json.dumps({"rts-st-cnn-affine.png": caption}))
    pictures = render_pictures([], tmp_path / "no-runs", image_dir, data_root=None)
    kept = pictures["table1", "rts-st-cnn-affine"]
    assert kept.link == "img/paper/rts-st-cnn-affine.png"
    assert kept.caption == f"{caption} (drawn earlier; its run folder is not here)"
    assert pictures["table1", "rts-st-cnn-tps"].link is None  # never drawn: says where the run would be
    report = render_report([], pictures)
    assert (
        f"- st-cnn-affine: {kept.caption}\n\n  ![rts-st-cnn-affine](img/paper/rts-st-cnn-affine.png)"
        in report
    )
    where = (tmp_path / "no-runs" / "table1" / "rts-st-cnn-tps-s*" / "checkpoint.pt").as_posix()
    assert f"- st-cnn-tps: no run folder yet (`{where}`)." in report
