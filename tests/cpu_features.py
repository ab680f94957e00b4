"""What the test machine's CPU offers, for tests that only mean something on some CPUs."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: every flag reads as absent and such tests skip
        return ""


def cpu_has(flag: str) -> bool:
    """Whether /proc/cpuinfo lists ``flag`` (e.g. "avx2", "avx512f") among the CPU's flags."""
    return any(
        flag in line.split(":", 1)[1].split() for line in _cpuinfo().splitlines() if line.startswith("flags")
    )
