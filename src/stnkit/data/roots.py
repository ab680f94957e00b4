"""Where the data lives: one place decides, every reader asks it.

Order: an explicit ``root`` (``--data-root``), else ``$STNKIT_DATA``, else a ``shared/data`` folder
beside the repository checkout (``../shared/data`` seen from the repository root or the current
directory) when it exists, else the user cache folder (``$XDG_CACHE_HOME/stnkit`` or
``~/.cache/stnkit``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "DataNotFoundError", "describe_root", "resolve_data_root", "run_data_root"]

ENV_VAR = "STNKIT_DATA"

# src/stnkit/data/roots.py -> parents[3] is the repository root of a source checkout.
_REPO_ROOT = Path(__file__).resolve().parents[3]


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not under the data root; the message says where we looked."""


def _default_candidates() -> list[Path]:
    # The repository checkout first, then the working directory (for an installed package run
    # from inside a checkout).
    return [_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]


def user_cache_dir() -> Path:
    """The per-user cache folder used when no other root is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stnkit"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Pick the data root: explicit > ``$STNKIT_DATA`` > ``../shared/data`` > user cache.

    The explicit root and the environment variable are taken as given (not checked for
    existence here, so that ``download --to DIR`` can create them); readers raise
    :class:`DataNotFoundError` naming the root when files are missing.

    Args:
        root: explicit folder, e.g. from ``--data-root``; ``None`` or ``""`` means "not given".

    Returns:
        Absolute path of the data root.

    Example:
        >>> resolve_data_root("/tmp/mydata")
        PosixPath('/tmp/mydata')
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    for candidate in _default_candidates():
        if candidate.is_dir():
            return candidate.resolve()
    return user_cache_dir()


def run_data_root(given: str | None, recorded: str | None) -> str | None:
    """The root to read a finished run's data from: ``given`` (``--data-root``) if any, else the root
    the run recorded while that folder still exists, else None (the order of :func:`resolve_data_root`).

    A run trained with ``--data-root DIR`` records DIR; on another machine, or after DIR moved, the
    usual order (``$STNKIT_DATA``, ...) finds the data instead of an error about a folder that is gone.

    Example:
        >>> run_data_root(None, "/no/such/folder") is None
        True
    """
    if given:
        return given
    if recorded and Path(recorded).expanduser().is_dir():
        return recorded
    return None


def describe_root(root: str | os.PathLike[str] | None) -> str:
    """Say which root was chosen and why, for error messages."""
    resolved = resolve_data_root(root)
    if root is not None and str(root) != "":
        how = "given explicitly (root= / --data-root)"
    elif os.environ.get(ENV_VAR):
        how = f"from ${ENV_VAR}"
    elif resolved == user_cache_dir():
        how = f"the user cache (no root given, ${ENV_VAR} unset, no ../shared/data found)"
    else:
        how = "the shared data folder beside the repository"
    return f"data root {resolved} ({how})"
