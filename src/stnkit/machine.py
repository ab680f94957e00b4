"""Facts about the machine a run is measured on, for result files and reports."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_model", "file_sha256", "git_commit", "machine_facts"]

# OpenMP settings that change how fast a run is on a shared machine (not what it computes):
# docs/benchmarks.md, "Training beside other work".
_OPENMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND")


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (``model name`` in /proc/cpuinfo), else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_facts() -> dict[str, Any]:
    """What a result records about the machine: CPU, cores, the widest vector instructions torch's
    kernels use on it (AVX2, AVX512, ...: "AMD EPYC" names CPUs with and without AVX-512), GPU (or
    None), torch and Python versions, and the OpenMP variables set in the environment (which
    explain a wall time, never a result)."""
    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "openmp_env": {name: os.environ[name] for name in _OPENMP_VARIABLES if name in os.environ},
    }


def git_commit() -> str | None:
    """The commit checked out in the working directory (None outside a git checkout or without git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()
