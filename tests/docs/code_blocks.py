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
REPO_ROOT = Path(__file__).resolve().parents[2]
# The README and every page of the documentation, in path order.
DOC_PAGES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").rglob("*.md")], key=str)
PYTHON_FENCES = {"python", "py", "pycon"}
SHELL_FENCES = {"bash", "sh", "shell", "console", ""}


@dataclass(frozen=True)
class CodeBlock:
    """One fenced Python block of a Markdown page."""

    line: int  # 1-based line of the opening fence
    code: str
    run: bool  # False when the fence is preceded by the no-test marker


def _fences(markdown: str, languages: set[str]) -> list[tuple[int, str]]:
    """(0-based line of the opening fence, content) of every fenced block in one of ``languages``."""
    fences = []
    for token in MarkdownIt("commonmark").parse(markdown):
        language = token.info.strip().split(" ")[0].lower() if token.type == "fence" else None
        if language in languages and token.map is not None:
            fences.append((token.map[0], token.content))
    return fences


def python_blocks(markdown: str) -> list[CodeBlock]:
    """Every fenced Python block of ``markdown``, in page order."""
    lines = markdown.splitlines()
    blocks = []
    for start, code in _fences(markdown, PYTHON_FENCES):
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        blocks.append(CodeBlock(line=start + 1, code=code, run=previous != NO_TEST))
    return blocks


def shell_lines(markdown: str) -> list[tuple[int, str]]:
    """(1-based line of the fence, command) for each line of the shell blocks of ``markdown`` (also
    blocks without a language), backslash continuations joined."""
    return [
        (start + 1, line)
        for start, code in _fences(markdown, SHELL_FENCES)
        for line in code.replace("\\\n", " ").splitlines()
    ]


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
