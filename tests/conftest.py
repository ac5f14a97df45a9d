from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SPEECH = FIXTURES / "speech"


def speech_clips() -> list[tuple[str, Path, str]]:
    """(speaker, wav path, transcript) of every committed speech fixture."""
    return [(wav.parent.name, wav, wav.with_suffix(".txt").read_text().strip())
            for wav in sorted(SPEECH.glob("*/*.wav"))]


@pytest.fixture(scope="session")
def speech():
    clips = speech_clips()
    assert clips, f"no speech fixtures under {SPEECH}"
    return clips
