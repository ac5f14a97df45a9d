import importlib.util
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SPEECH = FIXTURES / "speech"
ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str):
    """A script of the repository (``scripts/NAME.py``, ``benchmarks/NAME.py``) as a module, for
    tests of its functions and ``main``."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speech_clips() -> list[tuple[str, Path, str]]:
    """(speaker, wav path, transcript) of every committed speech fixture."""
    return [(wav.parent.name, wav, wav.with_suffix(".txt").read_text().strip())
            for wav in sorted(SPEECH.glob("*/*.wav"))]


@pytest.fixture(scope="session")
def speech():
    clips = speech_clips()
    assert clips, f"no speech fixtures under {SPEECH}"
    return clips
