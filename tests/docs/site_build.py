"""``mkdocs build --strict``, as ``make docs`` runs it (tests/docs/conftest.py, test_site.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site_dir``."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site_dir)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=config.parent, timeout=240)
