"""The README and docs/: every relative link reaches a file and every #anchor a heading, the
README's test command is the one CI runs, and its Python example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

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


def test_the_readmes_python_example_runs_from_another_folder(tmp_path):
    """The README's "Using the library from Python" block, run as a script in an empty folder
    (so `import metatts` must come from the installed package, as setup.sh installs it) on three
    of the real voice's clips and 2 steps: it writes a voice file that loads and the speech."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(
        "## Using the library from Python")[1].split("\n## ")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    clips = sorted((ROOT / "metatts" / "eval_speakers" / "real_allison").glob("*.flac"))[:3]
    given = '["clip1.wav", "clip2.wav", "clip3.wav"]'
    assert given in code and "steps=10" in code
    code = code.replace(given, repr([str(c) for c in clips])).replace("steps=10", "steps=2")
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["1", "2"]  # on_step
    from metatts.voice import Voice

    assert Voice.load(tmp_path / "voice.safetensors").clips == 3
    wav, rate = sf.read(tmp_path / "out.wav")
    assert rate == 22050 and 0.5 < len(wav) / rate < 6 and abs(wav).max() > 0.01
