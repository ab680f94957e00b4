"""The documentation site, built once per test session (``mkdocs build --strict``, as ``make docs``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.docs.site_build import build_site

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole site of the repository's mkdocs.yml (test_site.py, test_demo_browser.py)."""
    pytest.importorskip("mkdocs", reason="the docs site needs the dev extra: pip install -e '.[dev]'")
    site_dir = tmp_path_factory.mktemp("site")
    build = build_site(REPO_ROOT / "mkdocs.yml", site_dir)
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-4000:]}"
    return site_dir
