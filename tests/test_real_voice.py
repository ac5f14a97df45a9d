import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from metatts.audio import SAMPLE_RATE
from metatts.cli import main as cli
from metatts.corpus import real_voice as rv
from metatts.corpus.manifest import Clip, read_manifest, write_manifest
from metatts.data import read_dataset
from metatts.data.splits import split_speakers

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = """\
; Core Asterisk Sounds in English

hello-world: Hello world.
agent-pass: Please enter your password followed by the pound key.
conf-menu: Please press 1 to mute or unmute yourself, or 8 to exit.
dictate/both_help: press * to toggle pause, press # to enter a new dictation filename
vm-intro: Please leave your message after the tone. (simple tone sound plays)
demo-instruct: The sample configuration has extension 1234 and password 4242.
no-audio-here: This prompt has no recording at all.
"""
AUDIO = {"hello-world": "slt_01", "agent-pass": "slt_02", "conf-menu": "awb_01",
         "dictate/both_help": "awb_02", "vm-intro": "joe_01", "demo-instruct": "joe_02"}
KEPT = ["agent-pass", "conf-menu", "dictate/both_help"]


def _fake_asterisk(root: Path) -> Path:
    """A Debian-like tree: the G.722 prompts (made with ffmpeg from speech fixtures), the
    transcripts and the copyright file where the packages put them."""
    sounds = root / rv.SOUND_DIRS[0]
    for name, fixture in AUDIO.items():
        target = sounds / f"{name}.g722"
        target.parent.mkdir(parents=True, exist_ok=True)
        wav = next((ROOT / "tests/fixtures/speech").glob(f"*/{fixture}.wav"))
        subprocess.run([rv.ffmpeg_exe(), "-v", "error", "-i", str(wav), "-ar", "16000", "-ac", "1",
                        "-c:a", "g722", "-f", "g722", str(target)], check=True)
    text = root / rv.TRANSCRIPTS
    text.parent.mkdir(parents=True)
    with gzip.open(text, "wt", encoding="utf-8") as f:
        f.write(TRANSCRIPTS)
    copyright_ = root / rv.COPYRIGHTS[0]
    copyright_.parent.mkdir(parents=True)
    copyright_.write_text("Files: *\nCopyright: 2003-2010, Allison Smith\nLicense: CC-BY-SA-3.0\n")
    return root


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory):
    return _fake_asterisk(tmp_path_factory.mktemp("asterisk"))


@pytest.fixture(scope="module")
def built(asterisk, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "real_voice"
    return rv.build_real_voice(out, rv.find_sources(asterisk))


def test_transcripts_parse_name_text_lines(asterisk):
    texts = rv.read_transcripts(asterisk / rv.TRANSCRIPTS)
    assert len(texts) == 7 and texts["hello-world"] == "Hello world."
    assert texts["dictate/both_help"].startswith("press * to")


@pytest.mark.parametrize("written, spoken", [
    ("Please press 1 to mute, or 8 to exit.", "Please press one to mute, or eight to exit."),
    ("press * to toggle pause, press # to enter",
     "press star to toggle pause, press pound to enter"),
    ("Currently, there are more than ...", "Currently, there are more than"),
    ("[this is a simple beep tone]", None),  # a description, not words said
    ("Please leave your message. (simple tone sound plays)", None),
    ("extension 1234 and password 4242", None),  # digits or "twelve thirty-four"?
    ("at least a 28.8 kilobit modem", None),
    ("3D audio enabled", None),
])
def test_spoken_text(written, spoken):
    assert rv.spoken_text(written) == spoken


def test_corrections_replace_the_listed_text(tmp_path):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    (sounds / "pbx-invalid.g722").write_bytes(b"\0" * 800)
    texts = {"pbx-invalid": "I am sorry, that's not a valid extension. Please try again."}
    [prompt] = rv.select_prompts(texts, sounds).prompts
    assert prompt.written == texts["pbx-invalid"] and "but that's" in prompt.spoken


def test_selection_keeps_plain_prompts_of_five_words(asterisk):
    sources = rv.find_sources(asterisk)
    selection = rv.select_prompts(rv.read_transcripts(sources.transcripts), sources.sounds)
    assert [p.name for p in selection.prompts] == KEPT
    assert selection.skipped == {
        "hello-world": "fewer than 5 words", "no-audio-here": "no audio",
        "vm-intro": "not a plain transcript (a note, or a number read ambiguously)",
        "demo-instruct": "not a plain transcript (a note, or a number read ambiguously)"}
    short = rv.select_prompts(rv.read_transcripts(sources.transcripts), sources.sounds,
                              max_seconds=2.5)
    assert "longer than 2 s" in short.skipped.values()


def test_build_writes_the_speaker_folder_layout(built):
    out = built.root
    assert built.written == 3 and [c.id for c in built.clips] == [
        "real_allison_agent-pass", "real_allison_conf-menu", "real_allison_dictate-both_help"]
    assert sorted(p.name for p in (out / rv.SPEAKER).iterdir()) == sorted(
        f"{c.id}{suffix}" for c in built.clips for suffix in (".flac", ".txt"))
    for clip in built.clips:
        info = sf.info(str(out / clip.audio))
        assert (info.format, info.samplerate, info.subtype, info.channels) == (
            "FLAC", SAMPLE_RATE, "PCM_16", 1)
        assert abs(info.duration - clip.seconds) < 0.01 and clip.seconds > 1.0
        assert (out / clip.audio).with_suffix(".txt").read_text().strip() == clip.text
    assert built.clips[1].text == "Please press one to mute or unmute yourself, or eight to exit."
    assert read_manifest(out) == list(built.clips)
    clips = read_dataset(out).utterances  # metatts.data reads it through the manifest
    assert len(clips) == 3 and {(u.speaker, u.split) for u in clips} == {(rv.SPEAKER, "test")}
    assert {c.group for c in built.clips} == {"real"}


def test_licence_and_attribution_are_kept_beside_it(built, asterisk):
    out = built.root
    assert (out / rv.COPYRIGHT_FILE).read_text() == (asterisk / rv.COPYRIGHTS[0]).read_text()
    attribution = (out / rv.ATTRIBUTION_FILE).read_text()
    assert "Allison Smith" in attribution and "CC-BY-SA-3.0" in attribution
    assert "Changes made" in attribution  # CC-BY-SA asks that modifications be marked
    assert {c.licence for c in built.clips} == {rv.LICENCE} and {c.engine for c in built.clips} == {
        rv.ENGINE}


def test_rerun_with_everything_present_writes_nothing(built, asterisk):
    out = built.root
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = rv.build_real_voice(out, rv.find_sources(asterisk))
    assert again.written == 0 and again.clips == built.clips
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert rv.is_complete(out)
    assert rv.real_voice_group(out, root=asterisk / "nothing").root == out  # cached: no packages


def test_a_missing_clip_is_rebuilt_and_a_stale_one_removed(asterisk, tmp_path):
    out = tmp_path / "rv"
    first = rv.build_real_voice(out, rv.find_sources(asterisk))
    (out / first.clips[0].audio).unlink()
    stale = out / rv.SPEAKER / "real_allison_old.flac"
    stale.write_bytes(b"")
    assert not rv.is_complete(out)
    again = rv.build_real_voice(out, rv.find_sources(asterisk))
    assert again.written == 1 and again.clips == first.clips and not stale.exists()


def test_missing_packages_give_the_install_command(tmp_path, capsys):
    with pytest.raises(rv.RealVoiceUnavailable) as err:
        rv.find_sources(tmp_path)
    assert rv.INSTALL in str(err.value)
    assert rv.INSTALL == "sudo apt-get install -y asterisk-core-sounds-en-g722 asterisk-core-sounds-en"
    group = rv.real_voice_group(tmp_path / "out", root=tmp_path)  # the eval goes on without it
    assert group.root is None and rv.INSTALL in group.message
    assert not (tmp_path / "out").exists()
    assert cli(["realvoice", "--out", str(tmp_path / "out"), "--root", str(tmp_path)]) == 1
    assert rv.INSTALL in capsys.readouterr().err


def test_cli_builds_ships_and_lists_a_small_set(asterisk, tmp_path, capsys):
    out, ship = tmp_path / "rv", tmp_path / "eval" / rv.SPEAKER
    engine = Clip("rab_0000", "rab", "festival", "rab", "BSD", "test", "statement", "Hi there.",
                  "rab/rab_0000.flac", 1.0)
    write_manifest(ship.parent, [engine])
    argv = ["realvoice", "--out", str(out), "--root", str(asterisk), "--ship", str(ship),
            "--ship-clips", "2"]
    assert cli(argv) == 0
    assert "3 prompts" in capsys.readouterr().out
    shipped = read_manifest(ship)
    assert len(shipped) == 2 and all((ship / c.audio).is_file() for c in shipped)
    assert (ship / rv.COPYRIGHT_FILE).is_file() and (ship / rv.ATTRIBUTION_FILE).is_file()
    assert {u.speaker for u in read_dataset(ship).utterances} == {rv.SPEAKER}
    assert cli(argv) == 0  # listed once, beside the other groups' rows
    listed = read_manifest(ship.parent)
    assert listed[0] == engine and [c.audio for c in listed[1:]] == [
        f"{rv.SPEAKER}/{c.audio}" for c in shipped]
    assert {c.group for c in listed} == {"engine", "real"}


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ship_keeps_a_folder_of_the_users_own(built, asterisk, tmp_path, capsys):
    ship = tmp_path / "mine"
    ship.mkdir()
    (ship / "notes.txt").write_text("mine")
    argv = ["realvoice", "--out", str(built.root), "--root", str(asterisk), "--ship", str(ship),
            "--ship-clips", "2"]
    assert cli(argv) == 1
    assert "notes.txt" in capsys.readouterr().err and _files(ship) == {ship / "notes.txt": b"mine"}
    (ship / "notes.txt").unlink()  # empty: shipped into, and a previous export is replaced
    assert cli(argv) == 0 and cli(argv[:-1] + ["3"]) == 0 and len(read_manifest(ship)) == 3


def test_out_keeps_another_datasets_manifest(asterisk, tmp_path, capsys):
    out = tmp_path / "corpus"
    write_manifest(out, [Clip("rab_0000", "rab", "festival", "rab", "BSD", "test", "statement",
                              "Hi there.", "rab/rab_0000.flac", 1.0)])
    before = _files(out)
    assert cli(["realvoice", "--out", str(out), "--root", str(asterisk)]) == 1
    assert "speaker rab" in capsys.readouterr().err and _files(out) == before


def test_keeping_no_prompt_changes_nothing(built, asterisk, tmp_path, capsys):
    out = tmp_path / "rv"
    shutil.copytree(built.root, out)
    before = _files(out)
    assert cli(["realvoice", "--out", str(out), "--root", str(asterisk), "--min-words", "100"]) == 1
    assert "--min-words" in capsys.readouterr().err and _files(out) == before


def test_a_damaged_prompt_is_left_out_with_a_note(asterisk, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(asterisk, root)
    (root / rv.SOUND_DIRS[0] / f"{KEPT[0]}.g722").write_bytes(b"")
    assert cli(["realvoice", "--out", str(tmp_path / "rv"), "--root", str(root)]) == 0
    said = capsys.readouterr().out
    assert "2 prompts" in said and "left out 1: audio that does not decode" in said
    assert [c.id for c in read_manifest(tmp_path / "rv")] == [
        "real_allison_conf-menu", "real_allison_dictate-both_help"]


@pytest.mark.parametrize("problem, said", [
    ("too many clips", "ask for 1 to 3"),
    ("parent manifest not JSON", ":2: not a manifest row"),
    ("parent rows without speaker", ":1: not a manifest row"),
    ("out is a file", "is a file, not a folder"),
])
def test_cli_says_what_is_wrong(problem, said, built, asterisk, tmp_path, capsys):
    out, ship = built.root, tmp_path / "eval" / rv.SPEAKER
    ship.parent.mkdir()
    argv = ["--ship-clips", "50"] if problem == "too many clips" else []
    if problem == "parent manifest not JSON":
        (ship.parent / "manifest.jsonl").write_text('{"speaker": "rab"}\nnot json\n')
    if problem == "parent rows without speaker":
        (ship.parent / "manifest.jsonl").write_text('{"id": "rab_0000"}\n')
    if problem == "out is a file":
        out = tmp_path / "a file"
        out.write_text("mine")
    before = _files(tmp_path)
    assert cli(["realvoice", "--out", str(out), "--root", str(asterisk), "--ship", str(ship),
                *argv]) == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _files(tmp_path) == before and not ship.exists()


@pytest.mark.parametrize("count", ["0", "-2"])
def test_ship_clips_must_be_positive(count, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["realvoice", "--out", str(tmp_path / "rv"), "--ship", str(tmp_path / "s"),
             "--ship-clips", count])
    assert "--ship-clips must be at least 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_real_voice_is_never_training_data(built):
    splits = split_speakers(read_dataset(built.root).utterances, val=0.5, test=0.0)
    assert not splits.train and not splits.val and len(splits.test) == 3
    for config in sorted((ROOT / "configs").glob("*.json")):
        datasets = json.loads(config.read_text()).get("data", {}).get("datasets", [])
        assert not [d for d in datasets if "real" in d or "eval_speakers" in d], config


def test_shipped_real_voice_is_a_separate_group():
    shipped = read_manifest(rv.SHIPPED)
    assert len(shipped) >= 25 and {(c.speaker, c.split, c.engine, c.group) for c in shipped} == {
        (rv.SPEAKER, "test", rv.ENGINE, rv.GROUP)}
    for clip in shipped:
        assert sf.info(str(rv.SHIPPED / clip.audio)).samplerate == SAMPLE_RATE
        assert (rv.SHIPPED / clip.audio).with_suffix(".txt").read_text().strip() == clip.text
    assert (rv.SHIPPED / rv.COPYRIGHT_FILE).is_file() and (rv.SHIPPED / rv.ATTRIBUTION_FILE).is_file()
    listed = [c for c in read_manifest(rv.SHIPPED.parent) if c.speaker == rv.SPEAKER]
    assert [c.audio for c in listed] == [f"{rv.SPEAKER}/{c.audio}" for c in shipped]
    groups = {c.speaker: c.group for c in read_manifest(rv.SHIPPED.parent)}
    assert [s for s, g in groups.items() if g == "real"] == [rv.SPEAKER]  # never "engine"
    assert rv.SPEAKER in read_dataset(rv.SHIPPED.parent).speakers
