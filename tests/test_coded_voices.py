"""scripts/coded_voices.py: a voice's clips through the G.722 codec as the real voice's came, under
the same names and transcripts, band-limited and otherwise kept; a rerun keeps what it wrote."""

import numpy as np
import soundfile as sf
from scipy.signal import welch

from conftest import SPEECH, load_script


def _band_db(wav, rate, lo, hi):
    freqs, power = welch(wav, rate, nperseg=1024)
    return 10 * np.log10(power[(freqs >= lo) & (freqs < hi)].sum() + 1e-20)


def test_coded_clips_are_band_limited_and_keep_names_texts_and_speech(tmp_path):
    data = tmp_path / "corpus"
    (data / "slt").mkdir(parents=True)
    for wav in sorted((SPEECH / "slt").glob("*.wav"))[:2]:
        for f in (wav, wav.with_suffix(".txt")):
            (data / "slt" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "coded"
    script = load_script("scripts/coded_voices.py")
    assert script.main(["--data", str(data), "--voices", "slt", "--out", str(out)]) == 0
    sources = sorted((data / "slt").glob("*.wav"))
    assert [f.name for f in sorted((out / "slt").glob("*.wav"))] == [f.name for f in sources]
    for source in sources:
        coded = out / "slt" / source.name
        assert coded.with_suffix(".txt").read_text() == source.with_suffix(".txt").read_text()
        a, rate = sf.read(source, dtype="float32")
        b, coded_rate = sf.read(coded, dtype="float32")
        assert coded_rate == rate and abs(len(b) - len(a)) <= rate // 100
        # the speech band is kept, the band above G.722's 7 kHz is gone
        assert abs(_band_db(a, rate, 100, 4000) - _band_db(b, rate, 100, 4000)) < 1.0
        assert _band_db(b, rate, 8000, rate / 2) < _band_db(a, rate, 8000, rate / 2) - 10
    stamp = (out / "slt" / sources[0].name).stat().st_mtime_ns
    assert script.main(["--data", str(data), "--voices", "slt", "--out", str(out)]) == 0
    assert (out / "slt" / sources[0].name).stat().st_mtime_ns == stamp  # kept, not coded again
