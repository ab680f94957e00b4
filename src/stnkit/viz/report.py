"""The run report: ``report.md`` (images beside it) and a self-contained ``report.html``."""

from __future__ import annotations

import base64
import html
import json
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value)
    return str(value)


def _summary(records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    if not records:
        return [("epochs finished", "0")]
    last = records[-1]
    rows = [("epochs finished", str(last.get("epoch", "?")))]
    tested = [r for r in records if isinstance(r.get("test_error"), int | float)]
    if tested:
        rows.append(("final test error", f"{100 * tested[-1]['test_error']:.2f}%"))
        best = min(tested, key=lambda r: r["test_error"])
        rows.append(("best test error", f"{100 * best['test_error']:.2f}% (epoch {best['epoch']})"))
    if isinstance(last.get("train_error"), int | float):
        rows.append(("final train error", f"{100 * last['train_error']:.2f}%"))
    speeds = [r["images_per_s"] for r in records if isinstance(r.get("images_per_s"), int | float)]
    if speeds:
        rows.append(("training speed", f"{sum(speeds) / len(speeds):.0f} images/s (mean)"))
    if isinstance(last.get("elapsed_s"), int | float):
        rows.append(("wall time", f"{last['elapsed_s'] / 60:.1f} min"))
    return rows


def write_report(
    run_dir: str | Path,
    *,
    title: str,
    config: dict[str, Any],
    records: Sequence[dict[str, Any]],
    images: Sequence[tuple[str, str]],
    notes: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` and ``report.html`` into ``run_dir``.

    Args:
        run_dir: the run folder; image paths are relative to it.
        title: heading.
        config: the run's config (a table).
        records: per-epoch metrics (summary and table).
        images: (caption, file name) pairs; missing files are skipped.
        notes: free lines under the summary (e.g. the command).

    Returns:
        The path of ``report.md``.
    """
    run_dir = Path(run_dir)
    shown = [(caption, name) for caption, name in images if (run_dir / name).is_file()]
    summary = _summary(records)
    keys = ["epoch", "train_loss", "train_error", "test_loss", "test_error", "lr", "images_per_s"]
    columns = [k for k in keys if any(k in r for r in records)]

    md = [f"# {title}", "", "## Summary", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in summary]
    md += ["", *[f"{n}" for n in notes], ""] if notes else [""]
    for caption, name in shown:
        md += [f"## {caption}", "", f"![{caption}]({name})", ""]
    md += ["## Metrics per epoch", "", "| " + " | ".join(columns) + " |"]
    md += ["|" + "---|" * len(columns)]
    md += ["| " + " | ".join(_fmt(r.get(k, "")) for k in columns) + " |" for r in records]
    md += ["", "## Config", "", "| key | value |", "|---|---|"]
    md += [f"| {k} | `{_fmt(v)}` |" for k, v in sorted(config.items())]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", "<h2>Summary</h2>", "<table>"]
    body += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary]
    body += ["</table>"] + [f"<p>{esc(n)}</p>" for n in notes]
    for caption, name in shown:
        mime = mimetypes.guess_type(name)[0] or "image/png"
        data = base64.b64encode((run_dir / name).read_bytes()).decode("ascii")
        body += [f"<h2>{esc(caption)}</h2>", f'<img alt="{esc(caption)}" src="data:{mime};base64,{data}">']
    body += ["<h2>Metrics per epoch</h2>", "<table>"]
    body += ["<tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>"]
    body += [
        "<tr>" + "".join(f"<td>{esc(_fmt(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in records
    ]
    body += ["</table>", "<h2>Config</h2>", "<table>"]
    body += [
        f"<tr><th>{esc(k)}</th><td><code>{esc(_fmt(v))}</code></td></tr>" for k, v in sorted(config.items())
    ]
    body += ["</table>"]
    style = (
        "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "img{max-width:100%}"
    )
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    (run_dir / "report.html").write_text(page, encoding="utf-8")
    return md_path
