"""``stnkit models``: the registered model names."""

from __future__ import annotations

import argparse

from stnkit.models import list_models

__all__ = ["add_parser", "cmd_models"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit models``."""
    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """``stnkit models``."""
    for name in list_models():
        print(name)
    return 0
