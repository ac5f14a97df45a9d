"""Where a known voice loses its identity: prosody or spectrum? A diagnostic read, no target.

For the training speakers' held-out validation clips (never trained on; their speakers are), each
clip is spoken four ways and scored with ECAPA against the centroid of the speaker's training
clips (as the benchmark scores a voice against its real clips):

- ``real``: the recording; ``vocoded``: its mel through the vocoder (the vocoder's ceiling);
- ``teacher-forced``: the model's mel for that clip with the speaker's table row and the clip's
  own durations, pitch and energy (teacher-forced, as in training), post-filtered and vocoded;
- ``free-running``: the same sentence synthesized from the text with the same table row (the
  model's own durations, pitch and energy), as ``synthesize`` speaks a known voice.

If teacher-forced is close to vocoded, the voice is lost in the predicted prosody; if it is close
to free-running, in the decoder's spectrum. ECAPA is a judge here: the read trains, selects and
tunes nothing.

    python benchmarks/known_voice_cap.py --checkpoint checkpoints/pretrained \\
        --data-config configs/base_v2_warm.json --out results/known_voice_cap.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts import audio  # noqa: E402
from metatts.data.batch import example  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.model.config import Config, from_dict  # noqa: E402
from metatts.postfilter import apply as apply_postfilter  # noqa: E402
from metatts.train.data import collate_train, feature_cache, prepare  # noqa: E402

KINDS = ("real", "vocoded", "teacher-forced", "free-running")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/pretrained")
    parser.add_argument("--data-config", default="configs/base_v2_warm.json",
                        help="whose data section (corpus, feature cache) the checkpoint trained on")
    parser.add_argument("--prefix", default="kokoro_en_",
                        help="speakers whose name starts with this (default: the English packs)")
    parser.add_argument("--centroid-clips", type=int, default=10,
                        help="training clips per speaker in its ECAPA centroid")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from metatts import speaker as ecapa
    from metatts.synthesis import synthesize
    from metatts.vocoder import load_vocoder

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    config = from_dict(Config, json.loads(Path(args.data_config).read_text()))
    cache = feature_cache(config.data, Path("."), pitch=True)
    data = prepare(config.data, cache)
    index = {name: i for i, name in enumerate(ckpt.speakers)}
    chosen = sorted({u.speaker for u in data.val if u.speaker.startswith(args.prefix)
                     and u.speaker in index})
    if not chosen:
        parser.error(f"no training speaker of {args.data_config} starts with {args.prefix!r}.")
    vocoder = load_vocoder()
    rows, centroid_wavs = [], defaultdict(list)
    with torch.no_grad():
        for u in sorted((u for u in data.val if u.speaker in chosen), key=lambda u: u.id):
            features = cache.get(u)
            batch = collate_train([(example(u, cache, index), features.f0, None)])
            mel = apply_postfilter(model.outputs(batch).spoken[0], ckpt.config.postfilter)
            wav = audio.load_audio(u.audio)
            rows += [
                {"speaker": u.speaker, "id": u.id, "kind": "real", "wav": wav},
                {"speaker": u.speaker, "id": u.id, "kind": "vocoded",
                 "wav": vocoder(audio.mel_spectrogram(wav)).numpy()},
                {"speaker": u.speaker, "id": u.id, "kind": "teacher-forced",
                 "wav": vocoder(mel).numpy()},
                {"speaker": u.speaker, "id": u.id, "kind": "free-running",
                 "wav": synthesize(ckpt, u.text, None, u.speaker, vocoder=vocoder).wav}]
        for speaker in chosen:
            own = sorted((u for u in data.train if u.speaker == speaker), key=lambda u: u.id)
            centroid_wavs[speaker] = [audio.load_audio(u.audio)
                                      for u in own[: args.centroid_clips]]
    speakers = list(centroid_wavs)
    flat = [w for s in speakers for w in centroid_wavs[s]]
    embedded = ecapa.embed(flat, audio.SAMPLE_RATE)
    centroids, at = {}, 0
    for s in speakers:
        n = len(centroid_wavs[s])
        centroids[s] = embedded[at: at + n].mean(0)
        at += n
    scores = ecapa.embed([r["wav"] for r in rows], audio.SAMPLE_RATE)
    per_kind: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in KINDS}
    for r, e in zip(rows, scores):
        cosine = float(ecapa.similarity(e, centroids[r["speaker"]]))
        per_kind[r["kind"]][r["speaker"]].append(cosine)
    means = {k: float(np.mean([np.mean(v) for v in per_kind[k].values()])) for k in KINDS}
    report = {"checkpoint": str(args.checkpoint), "speakers": len(speakers),
              "clips_per_kind": len(rows) // len(KINDS), "centroid_clips": args.centroid_clips,
              "ecapa_to_centroid": {k: round(v, 4) for k, v in means.items()},
              "per_speaker": {k: {s: round(float(np.mean(v)), 3) for s, v in per_kind[k].items()}
                              for k in KINDS}}
    print(f"{report['speakers']} training speakers, {report['clips_per_kind']} held-out clips, "
          f"ECAPA to the centroid of {args.centroid_clips} training clips each")
    for k in KINDS:
        print(f"  {k:15s} {report['ecapa_to_centroid'][k]:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
