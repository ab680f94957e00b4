"""Every ``stnkit`` command line in a shell block of the README and the documentation parses.

The command lines are not run (most train for minutes or need the official archives); parsing them
with stnkit's own argument parser catches a renamed flag, a removed choice or a typo in the docs.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from stnkit.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}


def _shell_lines(markdown: str) -> list[tuple[int, str]]:
    """(1-based fence line, command) for every line of the page's shell blocks, continuations joined."""
    lines = []
    for token in MarkdownIt("commonmark").parse(markdown):
        language = token.info.strip().split(" ")[0].lower() if token.type == "fence" else ""
        if language in SHELL_FENCES and token.map is not None:
            lines += [(token.map[0] + 1, line) for line in token.content.replace("\\\n", " ").splitlines()]
    return lines


def _stnkit_argv(line: str) -> list[str] | None:
    """The arguments after ``stnkit`` when the line runs stnkit (``stnkit``, ``python -m stnkit``,
    ``torchrun ... -m stnkit``, after ``VAR=value`` assignments), else None."""
    words = shlex.split(line, comments=True)
    if "stnkit" not in words:
        return None
    at = words.index("stnkit")
    runs_it = at == 0 or words[at - 1] == "-m" or all("=" in word for word in words[:at])
    return words[at + 1 :] if runs_it else None


def _commands() -> list[tuple[str, list[str]]]:
    commands = []
    for page in PAGES:
        for fence_line, line in _shell_lines(page.read_text(encoding="utf-8")):
            argv = _stnkit_argv(line)
            if argv is not None:
                commands.append((f"{page.relative_to(REPO_ROOT)}:{fence_line}: {line.strip()}", argv))
    return commands


COMMANDS = _commands()


def test_the_docs_show_the_commands() -> None:
    # Guards the finder itself: the README's quick start alone has a dozen stnkit lines.
    pages = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "docs/training.md", "docs/getting-started.md"} <= pages
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where.split(": ")[0] for where, _ in COMMANDS])
def test_documented_command_parses(where: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        message = capsys.readouterr().err.strip().splitlines()
        assert not exit_.code, f"{where}\n  {message[-1] if message else exit_.code}"


def test_a_wrong_flag_in_a_shell_block_is_found() -> None:
    # The same path the docs take: a line with a flag that does not exist fails to parse.
    argv = _stnkit_argv("stnkit eval run/checkpoint.pt --no-such-flag  # comment")
    assert argv == ["eval", "run/checkpoint.pt", "--no-such-flag"]
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert _stnkit_argv("pip install stnkit") is None
    assert _stnkit_argv("OMP_WAIT_POLICY=PASSIVE stnkit train --threads 2") == ["train", "--threads", "2"]
