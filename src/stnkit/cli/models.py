"""``stnkit models``: the registered model names, then the shipped pretrained weights."""

from __future__ import annotations

import argparse

from stnkit.models import PretrainedWeights, get_pretrained, list_models, list_pretrained

__all__ = ["add_parser", "cmd_models"]

# The line that opens the second section. The first section stays one bare name per line, ended by
# a blank line: a script reading the names stops there (`stnkit models | sed '/^$/q'`).
_PRETRAINED_HEADER = "pretrained weights (name, dataset, test error recorded at the end of training):"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit models``."""
    p = sub.add_parser(
        "models",
        help="list the registered models and the shipped pretrained weights",
        description=(
            "Print the registered model names (what --model takes), one a line; then, after a blank "
            "line, the shipped pretrained weights (what --pretrained takes) with their dataset and "
            "recorded test error."
        ),
    )
    p.set_defaults(func=cmd_models)


def _error_text(entry: PretrainedWeights) -> str:
    """The recorded test error in percent, or a dash where the entry has none."""
    return "-" if entry.test_error is None else f"{100 * entry.test_error:.2f}%"


def _pretrained_rows() -> list[str]:
    """One aligned line per shipped weights file: name, dataset, recorded test error."""
    entries = [get_pretrained(name) for name in list_pretrained()]
    if not entries:
        return []
    name_width = max(len(entry.name) for entry in entries)
    dataset_width = max(len(entry.dataset) for entry in entries)
    return [
        f"{entry.name:<{name_width}}  {entry.dataset:<{dataset_width}}  {_error_text(entry)}"
        for entry in entries
    ]


def cmd_models(args: argparse.Namespace) -> int:
    """``stnkit models``."""
    for name in list_models():
        print(name)
    rows = _pretrained_rows()
    print()
    print(_PRETRAINED_HEADER)
    for row in rows or ["(none shipped)"]:
        print(row)
    return 0
