"""scripts/docs_figures.py draws the committed figures from the data (no training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "docs_figures.py"
COMMITTED = REPO_ROOT / "docs" / "img"
# Pictures PIL encodes from stnkit's own pixels (no matplotlib): the same bytes on every machine.
PIXEL_EXACT = ["pooling.png", "data-r.png", "data-rts.png", "data-p.png", "data-e.png", "data-tc.png"]
# Screenshots, not figures: demo.png is the demo page as tests/docs/test_demo_browser.py sees it
# (copied from build/demo-screenshots/demo-panels.png).
SCREENSHOTS = {"demo.png"}


def test_the_script_redraws_the_committed_figures(shared_data: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("docs_figures", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--data-root", str(shared_data), "--out", str(tmp_path)]) == 0
    drawn = sorted(path.name for path in tmp_path.glob("*.png"))
    assert drawn == sorted(path.name for path in COMMITTED.glob("*.png") if path.name not in SCREENSHOTS)
    for name in PIXEL_EXACT:
        assert (tmp_path / name).read_bytes() == (COMMITTED / name).read_bytes(), f"docs/img/{name} is stale"
