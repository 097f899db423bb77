"""The README stays a README, and its links lead somewhere (issue 26).

The pages under ``docs/`` are checked by ``mkdocs build --strict`` in CI (broken links and
anchors, pages missing from the nav); the README lies outside the site, so its links are
checked here.
"""

from __future__ import annotations

import re

from conftest import REPO

README = REPO / "README.md"
MOST_LINES = 300

# [text](target): a target that is no URL and no in-page anchor is a path from the README.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _relative_targets(markdown: str) -> list[str]:
    return [
        target.split("#", 1)[0]
        for target in LINK.findall(markdown)
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


def test_the_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= MOST_LINES


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    targets = _relative_targets(README.read_text(encoding="utf-8"))
    assert "docs/index.md" in targets  # the README points into the docs site
    missing = [target for target in targets if not (REPO / target).is_file()]
    assert not missing, f"README links to files that are not there: {missing}"


def test_the_link_check_sees_a_broken_link() -> None:
    targets = _relative_targets("[a](docs/gone.md#x) [b](https://example.org) [c](#anchor)")
    assert targets == ["docs/gone.md"]
    assert not (REPO / targets[0]).is_file()
