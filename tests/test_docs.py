"""The README and docs/: every relative link reaches a file and every #anchor a heading, and the
README's test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]*)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of a markdown file's headings (outside code blocks; repeats get -1, -2, ...)."""
    found, seen, code = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            code = not code
        match = None if code else re.match(r"^#{1,6} (.*)", line)
        if match:
            s = slug(match.group(1))
            found.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return found


def test_slug_table():
    assert slug("The app") == "the-app"
    assert slug("Benchmark tables: `python -m eval`") == "benchmark-tables-python--m-eval"
    assert slug("1,250 more steps (13,000 in all)") == "1250-more-steps-13000-in-all"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_readme_test_command_is_what_ci_runs():
    command = "bash scripts/setup.sh && .venv/bin/python -m pytest"
    first_screen = (ROOT / "README.md").read_text(encoding="utf-8").split("## Status")[0]
    assert command in first_screen
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith(command)
