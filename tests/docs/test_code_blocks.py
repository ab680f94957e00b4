"""Every ```python block in the README and the documentation runs, so that an example cannot rot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tests.docs.code_blocks import (
    DOC_PAGES,
    NO_TEST,
    REPO_ROOT,
    CodeBlock,
    python_blocks,
    run_blocks,
    stray_markers,
)


def _name(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


# Only pages with a runnable block, so that -ra lists no skip per page without code.
PAGES_WITH_CODE = [
    page for page in DOC_PAGES if any(b.run for b in python_blocks(page.read_text(encoding="utf-8")))
]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_name)
def test_page_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # files the examples write (model.onnx, pictures) land here
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs:{_name(page)}"}
    run_blocks(blocks, page, namespace)


@pytest.mark.parametrize("page", DOC_PAGES, ids=_name)
def test_no_test_markers_sit_on_python_blocks(page: Path) -> None:
    stray = stray_markers(page.read_text(encoding="utf-8"))
    assert not stray, f"{_name(page)}: {NO_TEST} not followed by a python block at lines {stray}"


def test_the_pages_hold_runnable_examples() -> None:
    # The collection above must not silently find nothing (a moved docs folder, a parser change).
    names = {_name(page) for page in PAGES_WITH_CODE}
    assert {"README.md", "docs/getting-started.md", "docs/tutorial.md"} <= names


# --- the extractor itself ---------------------------------------------------------------------

PAGE = """# Title

```python
x = 1
```

Text.

<!-- no-test -->
```python
raise RuntimeError("needs a download")
```

```bash
echo not python
```

    indented = "not a fence"

~~~py
y = x + 1
~~~
"""


def test_python_blocks_finds_fences_lines_and_markers() -> None:
    assert python_blocks(PAGE) == [
        CodeBlock(line=3, code="x = 1\n", run=True),
        CodeBlock(line=10, code='raise RuntimeError("needs a download")\n', run=False),
        CodeBlock(line=20, code="y = x + 1\n", run=True),
    ]


def test_run_blocks_shares_one_namespace_and_skips_marked_blocks() -> None:
    namespace: dict[str, object] = {}
    assert run_blocks(python_blocks(PAGE), Path("page.md"), namespace) == 2
    assert namespace["y"] == 2


def test_a_failing_block_names_the_page_and_its_line() -> None:
    page = "text\n\n```python\na = 1\nb = a / 0\n```\n"
    with pytest.raises(ZeroDivisionError) as failure:
        run_blocks(python_blocks(page), Path("docs/page.md"), {})
    frame = failure.traceback[-1]
    assert (str(frame.path), frame.lineno + 1) == ("docs/page.md", 5)


def test_stray_markers_are_found() -> None:
    page = f"{NO_TEST}\n\n```bash\nls\n```\n\n{NO_TEST}\n```python\npass\n```\n"
    assert stray_markers(page) == [1]


def test_the_docs_tests_do_not_depend_on_the_working_directory() -> None:
    assert all(page.is_file() for page in DOC_PAGES), os.getcwd()
