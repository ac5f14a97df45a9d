import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from metatts.cli.inspect import main as inspect_main
from metatts.data import DatasetError, detect_layout, read_dataset
from metatts.data.folders import read_clip_folder, read_speaker_folders
from metatts.data.hub import read_hub
from metatts.data.libritts import read_libritts
from metatts.data.ljspeech import read_ljspeech
from metatts.data.manifest import read_manifest
from metatts.data.vctk import read_vctk


def tone(path: Path, seconds=0.5, rate=16000, fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format=fmt)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def counts(readout) -> dict:
    return {reason: len(paths) for reason, paths in readout.skipped.items()}


@pytest.fixture
def folders(tmp_path):
    root = tmp_path / "voices"
    tone(root / "alice" / "a1.wav", 0.5)
    text(root / "alice" / "a1.txt", "Hello there.\n")
    tone(root / "alice" / "a2.flac", 0.25, rate=22050)
    text(root / "alice" / "a2.txt", "  Second   line  ")
    tone(root / "alice" / "a3.wav")  # no transcript
    tone(root / "alice" / "a4.wav")
    text(root / "alice" / "a4.txt", " \n")  # empty text
    text(root / "bob" / "b1.wav", "not audio")  # unreadable
    text(root / "bob" / "b1.txt", "Broken.")
    tone(root / "bob" / "b2.wav", 1.0)
    text(root / "bob" / "b2.txt", "Bob speaks.")
    text(root / "bob" / "b3.txt", "No audio for this one.")
    return root


def test_speaker_folders(folders):
    out = read_speaker_folders(folders)
    assert out.layout == "speaker_folders" and out.speakers == ["alice", "bob"]
    by_id = {u.id: u for u in out.utterances}
    assert sorted(by_id) == ["alice/a1", "alice/a2", "bob/b2"]
    assert by_id["alice/a1"].text == "Hello there." and by_id["alice/a2"].text == "Second line"
    assert by_id["alice/a2"].duration == pytest.approx(0.25, abs=1e-3)
    assert by_id["bob/b2"].audio == folders / "bob" / "b2.wav"
    assert counts(out) == {"missing_transcript": 1, "empty_text": 1, "unreadable_audio": 1,
                           "missing_audio": 1}
    assert out.skipped["unreadable_audio"] == [folders / "bob" / "b1.wav"]
    assert out.hours == pytest.approx(1.75 / 3600, rel=1e-3)


def test_clips_outside_speaker_folders_are_counted(folders):
    tone(folders / "stray.wav")
    assert counts(read_speaker_folders(folders))["outside_speaker_folder"] == 1


def test_clip_folder_is_one_speaker(folders):
    out = read_clip_folder(folders / "alice")
    assert {u.speaker for u in out.utterances} == {"alice"}
    assert [u.id for u in out.utterances] == ["a1", "a2"]
    assert read_clip_folder(folders / "alice", speaker="me").speakers == ["me"]


def test_jsonl_manifest(tmp_path):
    tone(tmp_path / "clips" / "kal" / "0.wav")
    tone(tmp_path / "clips" / "slt" / "0.wav")
    tone(tmp_path / "clips" / "slt" / "1.wav")
    rows = [
        {"audio": "clips/kal/0.wav", "text": "One.", "speaker": "kal", "split": "train",
         "engine": "flite", "voice": "kal", "licence": "BSD"},
        {"audio": "clips/slt/0.wav", "text": "Two.", "speaker": "slt", "split": "validation",
         "group": "engine"},
        {"audio": "clips/slt/1.wav", "text": "", "speaker": "slt"},
        {"audio": "clips/slt/9.wav", "text": "Gone.", "speaker": "slt"},
        {"id": "x", "audio": str(tmp_path / "clips" / "slt" / "1.wav"), "speaker": "slt"},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = read_manifest(manifest)
    assert [(u.id, u.speaker, u.split) for u in out.utterances] == [
        ("clips/kal/0", "kal", "train"), ("clips/slt/0", "slt", "val")]
    assert out.utterances[0].audio == tmp_path / "clips" / "kal" / "0.wav"
    assert [u.group for u in out.utterances] == [None, "engine"]
    assert counts(out) == {"empty_text": 1, "missing_audio": 1, "missing_transcript": 1}


def test_training_leaves_out_excluded_groups(tmp_path):
    from metatts.model.config import DataConfig
    from metatts.train.data import read_utterances

    for name in ("a", "b"):
        tone(tmp_path / f"{name}.wav")
    rows = [{"audio": "a.wav", "text": "One.", "speaker": "kal", "group": "engine"},
            {"audio": "b.wav", "text": "Two.", "speaker": "af_bella", "group": "natural"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    everything = read_utterances(DataConfig(datasets=(str(tmp_path),)))
    assert [u.speaker for u in everything] == ["kal", "af_bella"]
    natural = read_utterances(DataConfig(datasets=(str(tmp_path),), exclude_groups=("engine",)))
    assert [u.speaker for u in natural] == ["af_bella"]
    with pytest.raises(DatasetError, match="outside the groups"):
        read_utterances(DataConfig(datasets=(str(tmp_path),),
                                   exclude_groups=("engine", "natural")))


def test_csv_manifest(tmp_path):
    tone(tmp_path / "a.wav")
    (tmp_path / "list.csv").write_text('audio,text,speaker\na.wav,"Hi, you.",s1\n')
    out = read_manifest(tmp_path / "list.csv")
    assert [(u.id, u.text, u.speaker, u.split) for u in out.utterances] == [
        ("a", "Hi, you.", "s1", None)]


@pytest.mark.parametrize("name, content, message", [
    ("m.csv", "audio,speaker\na.wav,s1\n", r"lacks column\(s\) text"),
    ("m.jsonl", '{"audio": "a.wav", "text": "x", "speaker": "s"}\n{oops\n', "m.jsonl:2"),
    ("m.jsonl", '{"audio": "a.wav", "text": "x"}\n', "'speaker' field"),
    ("m.jsonl", '{"audio": "a.wav", "text": "x", "speaker": "s", "split": "dev2"}\n', "split"),
])
def test_bad_manifests_raise(tmp_path, name, content, message):
    tone(tmp_path / "a.wav")
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_manifest(tmp_path / name)


@pytest.fixture
def ljspeech(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    (root / "metadata.csv").write_text(
        'LJ001-0001|Printing, in the only sense|Printing, in the only sense\n'
        'LJ001-0002|in being "comparatively modern."|in being "comparatively modern."\n'
        'LJ001-0003|Chapter 2|\n'
        'LJ001-0004|No audio.|No audio.\n')
    for uid in ("LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0099"):
        tone(root / "wavs" / f"{uid}.wav", rate=22050)
    return root


def test_ljspeech(ljspeech):
    out = read_ljspeech(ljspeech)
    texts = {u.id: u.text for u in out.utterances}
    assert texts == {"LJ001-0001": "Printing, in the only sense",
                     "LJ001-0002": 'in being "comparatively modern."',
                     "LJ001-0003": "Chapter 2"}
    assert out.speakers == ["LJ"]
    assert counts(out) == {"missing_audio": 1, "missing_transcript": 1}


@pytest.fixture
def vctk(tmp_path):
    root = tmp_path / "VCTK-Corpus-0.92"
    wavs, txt = root / "wav48_silence_trimmed", root / "txt"
    for mic in ("mic1", "mic2"):
        tone(wavs / "p225" / f"p225_001_{mic}.flac", 0.5 if mic == "mic1" else 0.6, rate=48000)
    tone(wavs / "p225" / "p225_002_mic1.flac", rate=48000)
    text(txt / "p225" / "p225_001.txt", "Please call Stella.\n")
    text(txt / "p225" / "p225_002.txt", "Ask her to bring these things.\n")
    text(txt / "p225" / "p225_003.txt", "Audio never recorded.\n")
    tone(wavs / "p280" / "p280_001_mic1.flac", rate=48000)  # p280 has no mic2
    text(txt / "p280" / "p280_001.txt", "Six spoons of fresh snow peas.\n")
    tone(wavs / "p315" / "p315_001_mic1.flac", rate=48000)  # p315 has no transcripts
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION\n")
    return root


def test_vctk(vctk):
    out = read_vctk(vctk)
    clips = {u.id: u.audio.name for u in out.utterances}
    assert clips == {"p225_001": "p225_001_mic1.flac", "p225_002": "p225_002_mic1.flac",
                     "p280_001": "p280_001_mic1.flac"}
    assert out.speakers == ["p225", "p280"]
    assert counts(out) == {"missing_transcript": 1, "missing_audio": 1}
    mic2 = {u.id: u.audio.name for u in read_vctk(vctk, mic="mic2").utterances}
    assert mic2["p225_001"] == "p225_001_mic2.flac" and mic2["p280_001"] == "p280_001_mic1.flac"


def test_vctk_080_layout(tmp_path):
    tone(tmp_path / "wav48" / "p225" / "p225_001.wav", rate=48000)
    text(tmp_path / "txt" / "p225" / "p225_001.txt", "Please call Stella.")
    out = read_dataset(tmp_path)
    assert out.layout == "vctk" and [u.id for u in out.utterances] == ["p225_001"]


@pytest.fixture
def libritts(tmp_path):
    root = tmp_path / "LibriTTS"
    chapter = root / "train-clean-100" / "19" / "198"
    tone(chapter / "19_198_000000_000000.wav", rate=24000)
    text(chapter / "19_198_000000_000000.normalized.txt", "Northanger Abbey")
    text(chapter / "19_198_000000_000000.original.txt", "NORTHANGER ABBEY")
    tone(chapter / "19_198_000000_000001.wav", rate=24000)
    text(chapter / "19_198_000000_000001.original.txt", "CHAPTER 1")
    text(chapter / "19_198.trans.tsv", "19_198_000000_000000\tNORTHANGER ABBEY\tNorthanger Abbey\n")
    other = root / "dev-clean" / "84" / "121123"
    tone(other / "84_121123_000000_000000.wav", rate=24000)  # no transcript
    tone(other / "84_121123_000001_000000.wav", rate=24000)
    text(other / "84_121123_000001_000000.normalized.txt", "Go, do you hear?")
    text(other / "84_121123_000002_000000.normalized.txt", "A transcript without audio.")
    return root


def test_libritts(libritts):
    out = read_libritts(libritts)
    texts = {u.id: (u.speaker, u.text) for u in out.utterances}
    assert texts == {"19_198_000000_000000": ("19", "Northanger Abbey"),
                     "19_198_000000_000001": ("19", "CHAPTER 1"),
                     "84_121123_000001_000000": ("84", "Go, do you hear?")}
    assert counts(out) == {"missing_transcript": 1, "missing_audio": 1}
    assert len(read_libritts(libritts / "train-clean-100").utterances) == 2


def test_detect_layouts(folders, ljspeech, vctk, libritts, tmp_path):
    (tmp_path / "corpus").mkdir()
    tone(tmp_path / "corpus" / "clips" / "0.wav")
    (tmp_path / "corpus" / "manifest.jsonl").write_text(
        json.dumps({"audio": "clips/0.wav", "text": "Hi.", "speaker": "s"}) + "\n")
    assert detect_layout(folders) == ("speaker_folders", folders)
    assert detect_layout(folders / "alice") == ("clip_folder", folders / "alice")
    assert detect_layout(ljspeech) == ("ljspeech", ljspeech)
    assert detect_layout(ljspeech / "metadata.csv") == ("ljspeech", ljspeech)
    assert detect_layout(vctk) == ("vctk", vctk)
    assert detect_layout(libritts) == ("libritts", libritts)
    assert detect_layout(libritts / "dev-clean") == ("libritts", libritts / "dev-clean")
    manifest = tmp_path / "corpus" / "manifest.jsonl"
    assert detect_layout(tmp_path / "corpus") == ("manifest", manifest)
    assert detect_layout(manifest) == ("manifest", manifest)
    assert read_dataset(vctk).layout == "vctk"
    assert read_dataset(folders, layout="clip_folder").layout == "clip_folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="found no dataset layout"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such file"):
        detect_layout(tmp_path / "nowhere")


def test_inspect_prints_one_json_object(folders, capsys):
    assert inspect_main([str(folders)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"layout": "speaker_folders", "speakers": 2, "clips": 3,
                       "hours": round(1.75 / 3600, 4),
                       "skipped": {"empty_text": 1, "missing_audio": 1, "missing_transcript": 1,
                                   "unreadable_audio": 1}}
    assert inspect_main([str(folders), "--verbose"]) == 0
    verbose = json.loads(capsys.readouterr().out)
    assert verbose["skipped_files"]["missing_transcript"] == [str(folders / "alice" / "a3.wav")]


def test_inspect_reports_bad_path(tmp_path, capsys):
    assert inspect_main([str(tmp_path / "nowhere")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no such file or folder" in captured.err


def test_hub_needs_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DatasetError, match="pip install datasets"):
        read_hub("libritts_r")
    with pytest.raises(DatasetError, match="unknown hub corpus"):
        read_dataset("hf:nope")


class FakeStream:
    def __init__(self, rows):
        self.rows = rows

    def cast_column(self, column, feature):
        assert column == "audio" and feature == {"decode": False}
        return self

    def __iter__(self):
        return iter(self.rows)


def fake_datasets(rows, calls):
    def load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return FakeStream(rows)

    return types.SimpleNamespace(load_dataset=load_dataset, Audio=lambda decode: {"decode": decode})


def test_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets([], []))
    monkeypatch.setattr("metatts.assets.is_online", lambda: False)
    with pytest.raises(DatasetError, match="offline"):
        read_hub("vctk")


def test_hub_rows_become_files(monkeypatch, tmp_path):
    tone(tmp_path / "src.flac", fmt="FLAC")
    flac = (tmp_path / "src.flac").read_bytes()
    rows = [{"audio": {"bytes": flac, "path": f"p225_001_{mic}.flac"}, "file": "",
             "text": "Please call Stella.", "speaker_id": "p225"} for mic in ("mic1", "mic2")]
    rows.append({"audio": {"bytes": flac, "path": "p225_002_mic1.flac"}, "file": "",
                 "text": " ", "speaker_id": "p225"})
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(rows, calls))
    monkeypatch.setattr("metatts.assets.is_online", lambda: True)
    out = read_hub("vctk", cache_root=tmp_path / "cache")
    assert calls == [("CSTR-Edinburgh/vctk", None, "train", True)]
    assert [(u.id, u.speaker, u.text) for u in out.utterances] == [
        ("p225_001_mic1", "p225", "Please call Stella.")]
    assert out.utterances[0].audio.read_bytes() == flac and out.layout == "hub:vctk"
    assert counts(out) == {"empty_text": 1}


def test_inspect_counts_each_group_and_split_a_manifest_names(tmp_path, capsys):
    for name in ("a", "b", "c"):
        tone(tmp_path / f"{name}.wav")
    rows = [{"audio": "a.wav", "text": "One.", "speaker": "kal", "group": "engine",
             "split": "train"},
            {"audio": "b.wav", "text": "Two.", "speaker": "af_bella", "group": "natural",
             "split": "train"},
            {"audio": "c.wav", "text": "Three.", "speaker": "af_nicole", "group": "natural",
             "split": "test"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert inspect_main([str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["speakers"], summary["clips"]) == (3, 3)
    assert {g: (c["speakers"], c["clips"]) for g, c in summary["by_group"].items()} == \
        {"engine": (1, 1), "natural": (2, 2)}
    assert {s: c["clips"] for s, c in summary["by_split"].items()} == {"test": 1, "train": 2}
    assert sum(c["hours"] for c in summary["by_group"].values()) == \
        pytest.approx(summary["hours"], abs=2e-4)
