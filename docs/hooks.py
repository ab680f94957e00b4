"""MkDocs hooks for the stnkit site (mkdocs.yml: ``hooks``).

``docs/paper-results.md`` is written by ``stnkit reproduce --report`` and committed once the grid has
results. Until it exists, the site renders the same page in memory with the same renderer, from
whatever result files are under ``results/`` (usually none: every row then says "not run yet"), so the
navigation stays valid in strict mode and the page never claims numbers that were not measured.

The demo page (``docs/demo.md``) runs the shipped pretrained ST-CNNs in the browser; their models, test
image strips and onnxruntime-web's files are generated here into the site's ``demo/`` folder
(``docs/demo_assets.py``, which lists the models).
Without ``node_modules`` (``npm ci``) the build stops with a one-line message: a site whose demo page
cannot run would pass strict mode otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import demo_assets  # docs/demo_assets.py: mkdocs puts the hook's folder on sys.path while loading it
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

PAPER_RESULTS = "paper-results.md"
DEMO_FOLDER = "demo"  # beside docs/demo/demo.js; docs/demo.md is served as demo/index.html


def _rendered_paper_results(repository: Path) -> str:
    # Imported here: only a build without the committed page pays for importing torch.
    from stnkit.reproduce import load_results, render_report

    results_dir = repository / "results"
    results = load_results(results_dir)  # a missing folder holds no results
    note = (
        "!!! note\n"
        "    This page was rendered while building the site, because `docs/paper-results.md` is not\n"
        "    committed yet; run `stnkit reproduce --report` to write it (with the transformer pictures).\n\n"
    )
    title, _, body = render_report(results, pictures=None).partition("\n")
    return f"{title}\n\n{note}{body}"


def _add_demo_files(files: Files, config: Any, repository: Path) -> None:
    """The demo page's generated files: onnxruntime-web, the exported models, ``demo.json``."""
    try:
        generated = demo_assets.site_files(repository)
    except demo_assets.DemoAssetError as err:
        raise PluginError(str(err)) from err
    for name, source in generated.items():
        uri = f"{DEMO_FOLDER}/{name}"
        if isinstance(source, Path):
            files.append(File.generated(config, uri, abs_src_path=str(source)))
        else:
            files.append(File.generated(config, uri, content=source))


def on_files(files: Files, config: Any) -> Files:
    """Add the demo page's files, and a rendered ``paper-results.md`` when the committed one is missing."""
    repository = Path(config["config_file_path"]).parent
    if files.get_file_from_path(PAPER_RESULTS) is None:
        files.append(File.generated(config, PAPER_RESULTS, content=_rendered_paper_results(repository)))
    _add_demo_files(files, config, repository)
    return files
