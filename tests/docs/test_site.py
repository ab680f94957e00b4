"""The documentation site builds in strict mode and documents every public name.

The build is the same as ``make docs`` (mkdocs.yml, strict), into a temporary folder, once per session
(the ``site`` fixture of tests/docs/conftest.py, shared with the demo page's browser test). A broken
link, a page missing from the navigation or an API name that no longer exists fails it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from tests.docs.site_build import build_site

pytest.importorskip("mkdocs", reason="the docs site needs the dev extra: pip install -e '.[dev]'")

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "src" / "stnkit"
# API page (docs/api/<page>.md) -> the module it documents.
API_PAGES = {
    "stnkit": "stnkit",
    "geometry": "stnkit.geometry",
    "nn": "stnkit.nn",
    "models": "stnkit.models",
    "data": "stnkit.data",
    "engine": "stnkit.engine",
    "viz": "stnkit.viz",
    "export": "stnkit.export",
    "robustness": "stnkit.robustness",
    "reproduce": "stnkit.reproduce",
    "runs": "stnkit.runs",
    "numerics": "stnkit.numerics",
    "weights": "stnkit.weights",
    "machine": "stnkit.machine",
    "files": "stnkit.files",
    "keras": "stnkit.keras",
}


def public_names(module: str) -> list[str]:
    """``__all__`` of a stnkit module, read from its source (importing stnkit.keras needs Keras)."""
    relative = Path(*module.split(".")[1:])
    path = SOURCE / relative / "__init__.py"
    if not path.is_file():
        path = (SOURCE / relative).with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return [name for name in ast.literal_eval(node.value) if name != "__version__"]
    raise AssertionError(f"{path} has no __all__")


def test_the_site_builds_in_strict_mode(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "api" / "stnkit" / "index.html").is_file()
    assert not (site / "hooks.py").exists()  # build code, excluded from the site


# Public functions named like their home module (stnkit/geometry/warp.py defines warp): the documentation
# tool resolves ``stnkit.geometry.warp`` to the module, so the API pages document (or link) the function
# by its full path.
SHADOWED = {"stnkit.warp": "stnkit.geometry.warp.warp", "stnkit.geometry.warp": "stnkit.geometry.warp.warp"}


@pytest.mark.parametrize("page", sorted(API_PAGES))
def test_every_public_name_has_an_entry_in_the_api_reference(site: Path, page: str) -> None:
    module = API_PAGES[page]
    html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
    # An entry is a heading anchor, or for a shadowed name a link to (or anchor of) the function.
    entries = set(re.findall(r'id="([^"]+)"', html)) | set(re.findall(r'href="[^"]*#([^"]+)"', html))
    missing = [
        name
        for name in public_names(module)
        if SHADOWED.get(f"{module}.{name}", f"{module}.{name}") not in entries
    ]
    assert not missing, f"docs/api/{page}.md does not document {module}.{missing}"


def test_every_api_page_is_in_the_table_of_api_pages() -> None:
    pages = {path.stem for path in (REPO_ROOT / "docs" / "api").glob("*.md")} - {"index"}
    assert pages == set(API_PAGES)


def _tiny_site(tmp_path: Path, page: str) -> Path:
    """A one-page site with the real mkdocs.yml's settings (strict, validation, plugins)."""
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(page, encoding="utf-8")
    config.update(docs_dir=str(docs), nav=[{"Home": "index.md"}], hooks=[], exclude_docs="")
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    handler["paths"] = [str(REPO_ROOT / "src")]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("page", "complaint"),
    [
        ("# Home\n\nSee [the data](data.md).\n", "data.md"),
        ("# Home\n\n::: stnkit.no_such_module\n", "stnkit.no_such_module"),
        ("# Home\n\nUse [warp][stnkit.no_such_name].\n", "stnkit.no_such_name"),
    ],
    ids=["broken-link", "missing-module", "missing-api-name"],
)
def test_strict_mode_fails_on_what_it_should(tmp_path: Path, page: str, complaint: str) -> None:
    build = build_site(_tiny_site(tmp_path, page), tmp_path / "site")
    assert build.returncode != 0, f"the build passed on a page it should refuse: {page!r}"
    assert complaint in build.stderr


def test_the_tiny_site_builds_when_nothing_is_wrong(tmp_path: Path) -> None:
    # The refusals above are for the broken reference, not for the tiny site's set-up.
    page = "# Home\n\nUse [the layer][stnkit.nn.SpatialTransformer].\n\n::: stnkit.nn.SpatialTransformer\n"
    build = build_site(_tiny_site(tmp_path, page), tmp_path / "site")
    assert build.returncode == 0, build.stderr[-4000:]
