"""Every ``stnkit`` command line in a shell block of the README and the documentation parses.

The command lines are not run (most train for minutes or need the official archives); parsing them
with stnkit's own argument parser catches a renamed flag, a removed choice or a typo in the docs.
"""

from __future__ import annotations

import re
import shlex

import pytest
from tests.docs.code_blocks import DOC_PAGES, REPO_ROOT, shell_lines

from stnkit.cli import build_parser

MODULES = {"stnkit", "stnkit.cli"}  # what `python -m` / `torchrun -m` may name
_MENTIONS_STNKIT = re.compile(r"(^|[\s/])stnkit(\.cli)?(\s|$)")


def _stnkit_argv(line: str) -> list[str] | None:
    """The arguments after ``stnkit`` when the line runs stnkit (``stnkit``, ``python -m stnkit``,
    ``torchrun ... -m stnkit.cli``, after ``VAR=value`` assignments), else None."""
    if not _MENTIONS_STNKIT.search(line):
        return None  # only such lines are split, so a stray quote elsewhere cannot break collection
    words = shlex.split(line, comments=True)
    for at, word in enumerate(words):
        command = at == 0 or all("=" in earlier for earlier in words[:at])
        if (word == "stnkit" and command) or (word in MODULES and at > 0 and words[at - 1] == "-m"):
            return words[at + 1 :]
    return None


def _commands() -> list[tuple[str, list[str]]]:
    commands = []
    for page in DOC_PAGES:
        for fence_line, line in shell_lines(page.read_text(encoding="utf-8")):
            argv = _stnkit_argv(line)
            if argv is not None:
                commands.append((f"{page.relative_to(REPO_ROOT)}:{fence_line}: {line.strip()}", argv))
    return commands


COMMANDS = _commands()


def test_the_docs_show_the_commands() -> None:
    # Guards the finder itself: the README's quick start alone has a dozen stnkit lines.
    pages = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "docs/training.md", "docs/getting-started.md", "docs/data.md"} <= pages
    assert any(argv[:1] == ["train"] and "torchrun" in where for where, argv in COMMANDS)
    assert len(COMMANDS) >= 50


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where.split(": ")[0] for where, _ in COMMANDS])
def test_documented_command_parses(where: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        message = capsys.readouterr().err.strip().splitlines()
        assert not exit_.code, f"{where}\n  {message[-1] if message else exit_.code}"


def test_the_finder_reads_a_command_line_as_a_shell_would() -> None:
    argv = _stnkit_argv("stnkit eval run/checkpoint.pt --no-such-flag  # comment")
    assert argv == ["eval", "run/checkpoint.pt", "--no-such-flag"]
    with pytest.raises(SystemExit) as info:  # the same path the docs take: a wrong flag fails to parse
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert _stnkit_argv("OMP_WAIT_POLICY=PASSIVE stnkit train --threads 2") == ["train", "--threads", "2"]
    assert _stnkit_argv("torchrun --nproc_per_node=2 -m stnkit.cli train --out d") == ["train", "--out", "d"]
    assert _stnkit_argv("python -m stnkit models") == ["models"]
    assert _stnkit_argv("pip install stnkit") is None
    assert _stnkit_argv("echo 'unbalanced") is None
