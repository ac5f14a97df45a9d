"""The app served on localhost on a tiny model: gradio_client adapts on real clips (transcribed by
Whisper tiny.en), synthesizes and scores; then headless Chromium does the same by hand."""

import io
import json
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SPEECH
from gradio_client import Client, handle_file
from test_app import serve_app

pytestmark = pytest.mark.slow
CLIPS = sorted((SPEECH / "slt").glob("*.wav"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT_COPY = Path("/tmp/app_screenshot.png")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, figures) of the app on a random tiny checkpoint, with no meta-learned one."""
    with serve_app(tmp_path_factory.mktemp("app")) as url:
        yield url, {}


def uploads(directory: Path) -> list:
    """The clips without their transcripts beside them, so Whisper must fill them in."""
    directory.mkdir(exist_ok=True)
    return [handle_file(str(shutil.copy(p, directory / p.name))) for p in CLIPS]


def rss_mib() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


def test_gradio_client_adapts_synthesizes_and_scores(served, tmp_path):
    url, figures = served
    client = Client(url, verbose=False)
    table = client.predict(uploads(tmp_path / "up"), None, api_name="/check_clips")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert [r["clip"] for r in rows] == [p.name for p in CLIPS]
    assert all(r["use"] for r in rows) and all(r["confidence"] > 0.5 for r in rows)
    assert "window" in rows[0]["transcript"].lower()  # Whisper filled the transcript in

    started = time.perf_counter()
    curve, note, files = client.predict(table, "fine-tuning", 20, 0, api_name="/adapt")
    meta, ft, mel_meta, mel_ft, said, speech = client.predict("Hello there, my friend.",
                                                              api_name="/synthesize")
    figures["adapt_to_audio_s"] = round(time.perf_counter() - started, 2)
    assert "Adapted 3 clips" in note and len(curve["data"]) == 20
    assert Path(files[0]).name == "voice-pretrained.safetensors"
    assert mel_meta is None and "adapted in" in said  # audio streamed; whole in speech files
    assert [Path(f).name for f in speech] == ["speech-pretrained.wav"]
    wav, rate = sf.read(speech[0])
    assert rate == 22050 and len(wav) > 0 and np.isfinite(wav).all()
    assert Path(mel_ft).is_file()

    scores = client.predict(api_name="/score")
    (method, similarity, wer, _heard), = scores["data"]
    assert method == "fine-tuning" and -1 <= similarity <= 1 and wer >= 0
    figures["rss_mib"] = round(rss_mib())  # the app runs in this process
    print(json.dumps(figures))

    with pytest.raises(Exception, match="Type some text"):
        client.predict("   ", api_name="/synthesize")
    fresh = Client(url, verbose=False)  # another person: no voice of theirs yet
    with pytest.raises(Exception, match="no voice yet"):
        fresh.predict("Hello.", api_name="/synthesize")
    loaded = fresh.predict(handle_file(files[0]), api_name="/load_voice")
    assert "fine-tuning voice" in loaded


def test_bad_uploads_get_sentences_and_the_app_keeps_working(served, tmp_path):
    url, _ = served
    client = Client(url, verbose=False)
    # an API call that leaves the report table out gets the page's sentences, not a traceback
    with pytest.raises(Exception, match="no checked clips yet"):
        client.predict(None, "fine-tuning", 5, 0, api_name="/adapt")
    with pytest.raises(Exception, match="Check some clips first"):
        client.predict(None, api_name="/preview")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"this is not audio")
    table = client.predict([handle_file(str(broken))], None, api_name="/check_clips")
    assert "cannot read it as audio" in table["data"][0][table["headers"].index("problem")]
    with pytest.raises(Exception, match="No clip is selected"):
        client.predict(table, "fine-tuning", 5, 0, api_name="/adapt")
    with pytest.raises(Exception, match="formats: \\['.safetensors'\\]"):
        client.predict(handle_file(str(broken)), api_name="/load_voice")
    fake = broken.rename(tmp_path / "voice.safetensors")
    with pytest.raises(Exception, match="not a voice file"):
        client.predict(handle_file(str(fake)), api_name="/load_voice")
    table = client.predict(uploads(tmp_path / "up")[:1], None, api_name="/check_clips")
    assert table["data"][0][0] is True
    files, table = client.predict("awb", api_name="/example")
    assert [Path(f).name for f in files] == [p.name for p in sorted((SPEECH / "awb").glob("*.wav"))]
    assert all(row[0] is True for row in table["data"])


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="no chromium + chromedriver (apt-get install -y chromium "
                           "chromium-driver)")
def test_a_browser_uploads_adapts_and_hears_audio(served, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,2400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    wait = WebDriverWait(driver, 90)
    try:
        driver.get(url)
        upload = wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, "#clips input[type=file]")))
        upload.send_keys(str(shutil.copy(CLIPS[0], tmp_path / CLIPS[0].name)))
        wait.until(EC.presence_of_element_located(  # uploaded: its download link is there
            (By.CSS_SELECTOR, f'#clips a[download="{CLIPS[0].name}"]')))

        def click(elem_id):
            wait.until(EC.element_to_be_clickable((By.ID, elem_id))).click()

        click("check")
        wait.until(EC.text_to_be_present_in_element((By.ID, "report"), CLIPS[0].name))
        click("adapt")
        wait.until(EC.text_to_be_present_in_element((By.ID, "adapt-note"), "Adapted 1 clip:"))
        click("speak")
        wait.until(EC.text_to_be_present_in_element((By.ID, "speak-note"), "adapted in"))
        audio = wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, "#speech-files a[download]")))  # the whole speech's link
        href = audio.get_attribute("href")
        assert href.endswith(".wav")
        with urllib.request.urlopen(href) as response:
            wav, rate = sf.read(io.BytesIO(response.read()))
        assert rate == 22050 and len(wav) > 0
        wait.until(EC.text_to_be_present_in_element((By.ID, "scores"), "speaker similarity"))
        shot = tmp_path / "app.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        try:
            shutil.copy(shot, SCREENSHOT_COPY)
        except OSError:
            pass  # a convenience copy for people; the test's own is under tmp_path
        # text with no words is refused with a message, and the last speech stays on the page
        box = driver.find_element(By.CSS_SELECTOR, "#text textarea")
        box.clear()
        box.send_keys("?!...")
        click("speak")
        wait.until(lambda d: "it has no words" in d.page_source)
        assert "adapted in" in driver.find_element(By.ID, "speak-note").text
        assert not driver.find_elements(By.CSS_SELECTOR, "#speech-files .error, #audio-ft .error")
        assert driver.find_elements(By.CSS_SELECTOR, "#speech-files a[download]")
    except Exception:
        driver.save_screenshot(str(tmp_path / "failed.png"))  # to see where it stopped
        shutil.copy(tmp_path / "failed.png", SCREENSHOT_COPY.with_name("app_failed.png"))
        raise
    finally:
        driver.quit()


def test_api_calls_with_text_for_steps_or_without_the_report_get_the_pages_sentences(served,
                                                                                     tmp_path):
    """Through the API: steps or a learning rate sent as text get the sentence the page's bad
    settings get (not Gradio's bare "Error"); /preview without the report speaks from the clips
    the check ticked, leaving out the one it unticked, and says so."""
    url, _ = served
    client = Client(url, verbose=False)
    t = np.arange(3 * 22050) / 22050
    sf.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 22050)
    table = client.predict([*uploads(tmp_path / "up")[:2], handle_file(str(tmp_path / "tone.wav"))],
                           None, api_name="/check_clips")
    assert [row[0] for row in table["data"]] == [True, True, False]
    for steps, lr, message in (("abc", 0, "Steps must be a whole number between 1 and 200, not "
                                          "'abc'"),
                               (500, 0, "Steps must be a whole number between 1 and 200, not "
                                        "500"),
                               (5, "fast", "learning rate must be above 0 and at most 1, not "
                                           "'fast'")):
        with pytest.raises(Exception, match=message):
            client.predict(table, "fine-tuning", steps, lr, api_name="/adapt")
    _, note = client.predict(None, api_name="/preview")
    assert note.endswith("It speaks from the 2 clips the clip check ticked; send the report "
                         "table to choose others.")
    _, note = client.predict(table, api_name="/preview")
    assert "with your clips' frames" in note and "the clip check ticked" not in note
