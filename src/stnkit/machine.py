"""Facts about the machine a run is measured on, for result files and reports."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stnkit.files import sha256_file
from stnkit.numerics import numerics_in_use

__all__ = ["cpu_model", "git_commit", "machine_facts", "provenance"]

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
    """The commit of the checkout stnkit runs from (an editable install or ``PYTHONPATH=src``).

    None where there is none to tell: stnkit installed from a wheel, git missing or too slow, or a
    checkout without commits.
    """
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def provenance(
    argv: Sequence[str], *, checkpoints: Sequence[str] = (), pretrained: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Where a command's numbers come from, for the JSON files it writes.

    Call it as soon as the checkpoints are loaded, before the work: it hashes them then, so that a
    training that rewrites one meanwhile does not lend the record its next epoch's digest.

    Args:
        argv: the command's arguments after ``stnkit``.
        checkpoints: the checkpoint files it reads: each recorded with its SHA-256 and absolute path.
        pretrained: shipped weights it reads, as (name, SHA-256 of the file).

    Returns:
        The command line and the folder it ran in, the weights, the numerics, the machine
        (:func:`machine_facts`), the git commit (:func:`git_commit`) and the time it started (UTC).
    """
    weights: dict[str, Any] = {}
    if pretrained is not None:
        weights["pretrained"] = {"name": pretrained[0], "sha256": pretrained[1]}
    if checkpoints:
        weights["checkpoints"] = [
            {"path": path, "absolute_path": str(Path(path).resolve()), "sha256": sha256_file(path)}
            for path in checkpoints
        ]
    return {
        "command": shlex.join(["stnkit", *argv]),
        "cwd": os.getcwd(),
        **weights,
        "numerics": numerics_in_use(),
        "machine": machine_facts(),
        "git_commit": git_commit(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
