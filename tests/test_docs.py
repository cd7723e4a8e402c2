"""The docs are part of the product: they start right, and every command and option is in them."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import click
import pytest

from loadkit.cli import cli
from loadkit.load.profiles import BUILTIN_PROFILES
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def commands(group: click.Group, prefix: str = "loadkit") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from commands(command, path)
        else:
            yield path, command


def test_readme_starts_with_the_two_setup_commands() -> None:
    assert README.startswith("# loadkit\n\n```\nmake demo\nmake test\n```\n")


@pytest.mark.parametrize(("path", "command"), list(commands(cli)), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_and_option_is_documented(path: str, command: click.Command) -> None:
    assert f"`{path}" in README, f"{path} is not in README.md"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert any(opt in DOCS for opt in param.opts if opt.startswith("--")), f"{path} {param.opts}"


def code_blocks(text: str) -> list[str]:
    """The contents of fenced code blocks (```lang ... ```), in order."""
    return re.findall(r"^```[\w-]*\n(.*?)^```$", text, re.S | re.M)


def readme_command_lines() -> list[str]:
    lines = []
    for block in code_blocks(README):
        for line in block.splitlines():
            line = re.sub(r"^\.venv/bin/", "", line.split("  #")[0].strip())
            if line.startswith("loadkit ") and "[" not in line:
                lines.append(line.split("|")[0].strip())
    return lines


@pytest.mark.parametrize("line", readme_command_lines())
def test_readme_commands_parse(line: str) -> None:
    args = shlex.split(line)[1:]
    group: click.Command = cli
    while isinstance(group, click.Group) and args and args[0] in group.commands:
        group = group.commands[args.pop(0)]
    assert not isinstance(group, click.Group), line
    group.make_context(line, args)  # raises on an unknown option or a bad value


def test_every_builtin_profile_is_in_the_readme() -> None:
    for name in BUILTIN_PROFILES:
        assert f"| `{name}` |" in README


def test_make_targets_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make (\w+)`", README)):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_doc_links_resolve() -> None:
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", README):
        assert (ROOT / link).is_file(), link
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
