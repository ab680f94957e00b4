"""MkDocs hooks for the stnkit site (mkdocs.yml: ``hooks``).

``docs/paper-results.md`` is written by ``stnkit reproduce --report`` and committed once the grid has
results. Until it exists, the site renders the same page in memory with the same renderer, from
whatever result files are under ``results/`` (usually none: every row then says "not run yet"), so the
navigation stays valid in strict mode and the page never claims numbers that were not measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PAPER_RESULTS = "paper-results.md"


def _rendered_paper_results(repository: Path) -> str:
    # Imported here: only a build without the committed page pays for importing torch.
    from stnkit.cli.reproduce import _load_results, render_report

    results_dir = repository / "results"
    results = _load_results(results_dir) if results_dir.is_dir() else []
    note = (
        "!!! note\n"
        "    This page was rendered while building the site, because `docs/paper-results.md` is not\n"
        "    committed yet; run `stnkit reproduce --report` to write it (with the transformer pictures).\n\n"
    )
    title, _, body = render_report(results, pictures=None).partition("\n")
    return f"{title}\n\n{note}{body}"


def on_files(files: Files, config: Any) -> Files:
    """Add a rendered ``paper-results.md`` when the committed one is missing."""
    if files.get_file_from_path(PAPER_RESULTS) is None:
        repository = Path(config["config_file_path"]).parent
        files.append(File.generated(config, PAPER_RESULTS, content=_rendered_paper_results(repository)))
    return files
