"""Per-epoch metrics as JSON lines: one object per line, appended as training goes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from stnkit.engine.durable import write_text_durably

__all__ = ["append_jsonl", "read_jsonl", "truncate_jsonl"]


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a line and flush it to disk."""
    line = json.dumps({k: _jsonable(v) for k, v in record.items()}, sort_keys=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read the records, skipping a torn last line left by a killed writer."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_jsonl(path: str | Path, *, max_epoch: int) -> list[dict[str, Any]]:
    """Keep only records with ``epoch <= max_epoch`` (on resume, drop epochs that were lost).

    The file is replaced atomically: a crash while truncating leaves the old file whole.
    """
    kept = [r for r in read_jsonl(path) if int(r.get("epoch", 0)) <= max_epoch]
    write_text_durably(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    return kept


def _jsonable(value: Any) -> Any:
    # JSON has no NaN/inf; keep the record readable by strict parsers.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
