"""The ```python blocks of the documentation pages, found with a CommonMark parser (markdown-it-py).

A block runs unless the line before its fence is ``<!-- no-test -->`` (for blocks that need a data
download or a long training; use it sparingly). The blocks of one page run in order in one namespace,
as a reader would run them, so a later block may use what an earlier one defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

NO_TEST = "<!-- no-test -->"
PYTHON_FENCES = {"python", "py", "pycon"}


@dataclass(frozen=True)
class CodeBlock:
    """One fenced Python block of a Markdown page."""

    line: int  # 1-based line of the opening fence
    code: str
    run: bool  # False when the fence is preceded by the no-test marker


def python_blocks(markdown: str) -> list[CodeBlock]:
    """Every fenced Python block of ``markdown``, in page order."""
    lines = markdown.splitlines()
    blocks = []
    for token in MarkdownIt("commonmark").parse(markdown):
        language = token.info.strip().split(" ")[0].lower() if token.type == "fence" else ""
        if language not in PYTHON_FENCES or token.map is None:
            continue
        start = token.map[0]  # 0-based line of the opening fence
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        blocks.append(CodeBlock(line=start + 1, code=token.content, run=previous != NO_TEST))
    return blocks


def stray_markers(markdown: str) -> list[int]:
    """1-based lines of no-test markers that do not sit right before a Python block (a typo or a leftover)."""
    lines = markdown.splitlines()
    marked = {block.line for block in python_blocks(markdown) if not block.run}
    stray = []
    for index, line in enumerate(lines):
        if line.strip() != NO_TEST:
            continue
        following = next((i for i in range(index + 1, len(lines)) if lines[i].strip()), None)
        if following is None or following + 1 not in marked:
            stray.append(index + 1)
    return stray


def run_blocks(blocks: list[CodeBlock], page: Path, namespace: dict[str, object]) -> int:
    """Execute the runnable blocks in ``namespace``; returns how many ran.

    Each block is compiled under the name ``page:line`` so that a failure's traceback points at the
    page and the line of the block.
    """
    ran = 0
    for block in blocks:
        if not block.run:
            continue
        # Pad with blank lines so that traceback line numbers are the page's own.
        source = "\n" * block.line + block.code
        exec(compile(source, f"{page}", "exec"), namespace)
        ran += 1
    return ran
