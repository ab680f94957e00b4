"""docs/paper-results.md says what the committed result files say (re-render it with each result)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stnkit.cli.reproduce import ROBUSTNESS_FOLDER, _robustness_figure
from stnkit.reproduce import PICTURE_DIR, load_results, render_glance, render_report, replace_glance

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT = REPO_ROOT / "docs" / "paper-results.md"
README = REPO_ROOT / "README.md"
RESULTS = REPO_ROOT / "results"
PICTURES_TITLE = "## What the transformers learned"


def test_the_report_matches_the_result_files_up_to_the_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pictures need the run folders, which live outside the repository; everything above them
    # (every table and the robustness sweep) comes from files committed beside the report. The sweep
    # is read as `stnkit reproduce --report` reads it, from the repository root (its plot is copied
    # into tmp_path here, not into docs/).
    monkeypatch.chdir(REPO_ROOT)
    robustness = _robustness_figure(Path("results") / ROBUSTNESS_FOLDER, tmp_path)
    expected = render_report(load_results(RESULTS), robustness=robustness)
    committed = REPORT.read_text().split(PICTURES_TITLE)[0]
    assert committed.rstrip() == expected.rstrip(), (
        "docs/paper-results.md is stale: run `stnkit reproduce --report` after adding result files"
    )


def test_the_robustness_plot_in_the_report_is_the_committed_one() -> None:
    plot = RESULTS / "robustness" / "robustness.png"
    if plot.is_file():
        copied = REPO_ROOT / "docs" / PICTURE_DIR / "robustness.png"
        assert copied.read_bytes() == plot.read_bytes(), "docs/img/paper/robustness.png is stale"


def test_the_readmes_glance_matches_the_result_files() -> None:
    text = README.read_text()
    assert replace_glance(text, render_glance(load_results(RESULTS))) == text, (
        "README.md's glance is stale: run `stnkit reproduce --report --readme README.md`"
    )
