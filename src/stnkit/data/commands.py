"""``stnkit data download|show``: argparse wiring for the data area (called by ``stnkit.cli``)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stnkit.data.download import DOWNLOADABLE, DownloadError, download_dataset
from stnkit.data.gtsrb import GtsrbError
from stnkit.data.loaders import list_datasets, make_loader
from stnkit.data.mnist import IdxError
from stnkit.data.roots import ENV_VAR, DataNotFoundError, user_cache_dir
from stnkit.data.show import save_grid

__all__ = ["add_data_subcommands"]

# Failures a user can fix; anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, DataNotFoundError, DownloadError, IdxError, GtsrbError, OSError)


def _fail(command: str, message: object, code: int = 1) -> int:
    print(f"stnkit data {command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _count(minimum: int) -> Callable[[str], int]:
    """argparse type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text}")
        return value

    return parse


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _download_command(args: argparse.Namespace) -> int:
    if args.name not in DOWNLOADABLE:
        return _fail("download", f"cannot download {args.name!r}; valid: {sorted(DOWNLOADABLE)}", 2)
    # Not resolve_data_root(): its default may be a read-only shared folder.
    to = args.to or getattr(args, "data_dir", None) or os.environ.get(ENV_VAR) or user_cache_dir()
    try:
        folder = download_dataset(
            args.name,
            to,
            base_url=args.base_url,
            retries=args.retries,
            timeout=args.timeout,
            keep_archives=args.keep_archives,
        )
    except _USER_ERRORS as err:
        return _fail("download", err)
    print(f"{args.name} is in {folder}; use it with --data-root {Path(to)} or {ENV_VAR}={Path(to)}")
    return 0


def _show_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        return _fail("show", f"--out {out} is a folder; give a PNG file name", 2)
    if out.suffix.lower() != ".png":
        return _fail("show", f"--out {out}: the picture is a PNG, so the name must end in .png", 2)
    try:
        loader = make_loader(
            args.name,
            split=args.split,
            batch_size=args.num,
            root=getattr(args, "data_dir", None),
            seed=args.seed,
            # Test: the first images of the fixed test set. Train: a shuffled batch of the whole
            # split (the first training images of GTSRB are all one class).
            limit=args.num if args.split == "test" else None,
            shuffle=args.split == "train",
        )
        loader.set_epoch(args.epoch)
        images, labels = next(iter(loader))
        path = save_grid(images, args.out, ncols=args.ncols, scale=args.scale)
    except _USER_ERRORS as err:
        return _fail("show", err, 2 if isinstance(err, ValueError) else 1)
    print(f"wrote {len(images)} {args.name} {args.split} samples to {path}")
    print("labels: " + " ".join(str(int(v)) for v in labels))
    return 0


def add_data_subcommands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data download`` and ``data show`` to a top-level ``add_subparsers()`` object.

    Each leaf parser sets ``func`` (``Namespace -> int``) with ``set_defaults``.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``data`` parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="stnkit")
        >>> _ = add_data_subcommands(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["data", "show", "rts", "--out", "rts.png"])
        >>> args.name, args.out
        ('rts', 'rts.png')
    """
    data = subparsers.add_parser("data", help="download datasets, look at samples")
    commands = data.add_subparsers(dest="data_command", metavar="{download,show}")
    commands.required = True

    download = commands.add_parser(
        "download",
        help="download MNIST or GTSRB (resumable, checksum-verified)",
        description="Fetch the official files into DIR/<name>/ so that DIR works as a data root.",
    )
    download.add_argument("name", help=f"one of {sorted(DOWNLOADABLE)}")
    download.add_argument("--to", metavar="DIR", help=f"data root (default: ${ENV_VAR} or cache)")
    download.add_argument(
        "--data-root", "--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="as --to"
    )
    download.add_argument("--base-url", help="use this mirror instead of the official URLs")
    download.add_argument("--retries", type=_count(0), default=3, help="resumed retries per file")
    download.add_argument("--timeout", type=_seconds, default=60.0, help="socket timeout (s)")
    download.add_argument("--keep-archives", action="store_true", help="keep GTSRB zips")
    download.set_defaults(func=_download_command)

    show = commands.add_parser(
        "show",
        help="write a PNG grid of samples of a dataset",
        description="Write a grid of (distorted) samples, e.g. `stnkit data show rts --out x.png`.",
    )
    show.add_argument("name", help=f"one of {list_datasets()}")
    show.add_argument("--out", required=True, help="PNG file to write")
    show.add_argument("--split", default="test", help="train or test (default test)")
    show.add_argument("--num", type=_count(1), default=32, help="number of samples")
    show.add_argument("--ncols", type=_count(1), default=8, help="samples per row")
    show.add_argument("--scale", type=_count(1), default=2, help="pixel upscaling")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--epoch", type=int, default=0, help="training epoch to show")
    show.add_argument(
        "--data-root", "--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="data root"
    )
    show.set_defaults(func=_show_command)
    return data
