"""The README and docs/ stay true: short README, links that resolve, commands that exist."""

import re
import shlex
from pathlib import Path

import pytest

from edge_guard.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "reports" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
INLINE = re.compile(r"`(edge-guard [^`]+)`")
SCRIPT = re.compile(r"python (benchmarks/[\w/]+\.py)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set:
    return {_anchor(line) for line in page.read_text().splitlines()
            if line.startswith("#")}


def _commands(text: str):
    """Every `edge-guard ...` line of the page's bash blocks and inline code, comments cut."""
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("edge-guard "):
                    yield part
    yield from INLINE.findall(text)


def test_readme_fits_on_two_screens():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_exist(page):
    text = page.read_text()
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in _commands(text):
        tokens = shlex.split(command.replace("...", ""))
        name = tokens[1]
        if name.startswith("-"):
            continue
        assert name in subcommands, f"{page.name}: `{command}`: no subcommand {name!r}"
        options = subcommands[name]._option_string_actions
        for token in tokens[2:]:
            if token.startswith("--"):
                assert token.split("=", 1)[0] in options, \
                    f"{page.name}: `{command}`: {name} has no option {token}"
    for script in SCRIPT.findall(text):
        assert (ROOT / script).is_file(), f"{page.name}: {script} does not exist"


def test_the_checks_catch_a_broken_page(tmp_path):
    """The helpers above find a dead link and an unknown option (so the tests can fail)."""
    page = tmp_path / "page.md"
    page.write_text("[gone](nowhere.md)\n\n```bash\nedge-guard run --camera 0 --no-such-flag\n```\n")
    assert LINK.findall(page.read_text()) == ["nowhere.md"]
    assert list(_commands(page.read_text())) == ["edge-guard run --camera 0 --no-such-flag"]
    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    assert "--no-such-flag" not in run._option_string_actions
    assert _anchor("## What attacks cost") == "what-attacks-cost"
    assert _anchor("## Jetson recipe (Orin)") == "jetson-recipe-orin"
