"""DNSMOS (the benchmark's naturalness judge): the P.835-only path gives speechmos's numbers."""

from pathlib import Path

import numpy as np
import soundfile as sf

from eval import naturalness

CLIPS = sorted((Path(naturalness.__file__).resolve().parents[1] / "metatts" / "eval_speakers"
                / "kokoro_en_af_nicole").glob("*.flac"))


def test_p835_alone_equals_speechmos_whole_call():
    import speechmos.dnsmos

    assert naturalness.INPUT_SECONDS == speechmos.dnsmos.INPUT_LENGTH
    wavs, rates = zip(*(sf.read(f, dtype="float32") for f in CLIPS[:4]))  # 3.3-11.1 s
    lengths = [len(w) / r for w, r in zip(wavs, rates)]
    assert min(lengths) < 9.01 < max(lengths)  # a repeated clip and several windows
    rate = rates[0]
    whole = naturalness.dnsmos(list(wavs), rate, p808=True)
    alone = naturalness.dnsmos(list(wavs), rate)
    for a, b in zip(alone, whole):
        assert np.allclose([a.ovrl, a.sig, a.bak], [b.ovrl, b.sig, b.bak], atol=1e-6)
        assert a.p808 is None and 1 <= b.p808 <= 5 and 1 <= a.ovrl <= 5
