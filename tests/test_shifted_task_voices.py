"""scripts/shifted_task_voices.py: out-of-span task voices from the training packs only, as a
manifest dataset that the library reads; a rerun keeps what it wrote."""

import json
import numpy as np
import soundfile as sf

from conftest import SPEECH, load_script
from metatts.data.manifest import read_manifest


def test_shifted_voices_come_from_training_packs_only_and_resume(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    wavs = sorted((SPEECH / "slt").glob("*.wav"))[:2]
    rows = []
    for speaker, split in (("kokoro_en_af_heart", "train"), ("kokoro_en_af_kore", "val"),
                           ("kokoro_mix_0001", "train")):
        for i, wav in enumerate(wavs):
            (corpus / speaker).mkdir(exist_ok=True)
            target = corpus / speaker / f"{speaker}_{i:04d}.wav"
            target.write_bytes(wav.read_bytes())
            rows.append({"id": target.stem, "speaker": speaker, "split": split, "group": "natural",
                         "text": wav.with_suffix(".txt").read_text().strip(), "seconds": 3.0,
                         "audio": f"{speaker}/{target.name}"})
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "voices"
    script = load_script("scripts/shifted_task_voices.py")
    assert script.main(["--corpus", str(corpus), "--out", str(out), "--clips", "2"]) == 0
    readout = read_manifest(out / "manifest.jsonl")
    speakers = {u.speaker for u in readout.utterances}
    assert speakers == {f"shifted_af_heart_f{s.formant:g}_p{s.pitch:g}" for s in script.SHIFTS}
    assert {u.split for u in readout.utterances} == {"train"}
    first = next(iter(readout.utterances))
    shifted, rate = sf.read(first.audio, dtype="float32")
    source, _ = sf.read(wavs[int(first.id[-4:])], dtype="float32")
    assert rate > 0 and shifted.size > 0 and not np.allclose(shifted[: source.size], source[: shifted.size])
    stamp = first.audio.stat().st_mtime_ns
    assert script.main(["--corpus", str(corpus), "--out", str(out), "--clips", "2"]) == 0
    assert first.audio.stat().st_mtime_ns == stamp  # kept, not rendered again
