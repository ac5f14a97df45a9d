"""A picture of the app after one whole cycle, on the shipped checkpoints, taken by a real browser.

Starts ``python app.py`` (as ``app_flow.py`` does), opens it in headless Chromium, uploads
``--clips`` clips of a held-out voice without transcripts, checks them, adapts with the page's
defaults (both starts side by side, its default steps), speaks its default sentence and waits for
the scores; then saves the whole page as a PNG and prints what the page said.

    python benchmarks/app_screenshot.py [--speaker real_allison] [--clips 3]
        [--out results/app_screenshot.png]

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
import tempfile
from pathlib import Path

from app_flow import CLIPS, App

WIDTH = 1280


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speaker", default="real_allison", help="a folder of metatts/eval_speakers")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300, help="seconds any one step may take")
    p.add_argument("--out", default="results/app_screenshot.png")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not (chromium and driver_exe):
        p.error("needs chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    clips = sorted((CLIPS / args.speaker).glob("*.flac"))[: args.clips]
    if not clips:
        p.error(f"no .flac clips in {CLIPS / args.speaker}")

    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", f"--window-size={WIDTH},2400"):
        options.add_argument(flag)
    folder = Path(tempfile.mkdtemp(prefix="app-screenshot-"))
    with App() as served:
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=driver_exe))
        wait = WebDriverWait(driver, args.timeout)

        def click(elem_id: str) -> None:
            wait.until(EC.element_to_be_clickable((By.ID, elem_id))).click()

        def note(elem_id: str, text: str) -> str:
            wait.until(EC.text_to_be_present_in_element((By.ID, elem_id), text))
            return driver.find_element(By.ID, elem_id).text

        try:
            driver.get(served.url)
            upload = wait.until(EC.presence_of_element_located(
                (By.CSS_SELECTOR, "#clips input[type=file]")))
            upload.send_keys("\n".join(str(shutil.copy(c, folder / c.name)) for c in clips))
            for c in clips:  # uploaded: each has its download link
                wait.until(EC.presence_of_element_located(
                    (By.CSS_SELECTOR, f'#clips a[download="{c.name}"]')))
            click("check")
            note("report", clips[-1].name)
            print("preview:", note("preview-note", "s"))
            click("adapt")
            print("adapt:", note("adapt-note", "Adapted"))
            click("speak")
            print("speak:", note("speak-note", "adapted in"))
            wait.until(lambda d: "fine-tuning" in d.find_element(By.ID, "scores").text
                       and "Scoring" not in d.find_element(By.ID, "scores").text)
            print("scores:", driver.find_element(By.ID, "scores").text.replace("\n", " | "))
            # the whole page, beyond the window (Chromium's DevTools capture)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True})
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            print(f"wrote {out}")
        finally:
            driver.quit()
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
