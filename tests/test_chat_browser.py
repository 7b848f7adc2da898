"""The chat tab end to end: `python app.py` with the tiny model, driven by headless Chromium and by
gradio_client's `/analyze`, as a user and an API client would.

Browser tests need Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it) and are skipped
without it; run them alone with `pytest -m browser tests/test_chat_browser.py`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from crashchat.tasks import TASK_IDS

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`python app.py --port PORT` with CRASHCHAT_MODEL=tiny-random, as the README starts it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    from crashchat.synthetic import EXAMPLES, write_clip

    examples = tmp_path_factory.mktemp("examples")
    for name, scene, seconds, seed in EXAMPLES:  # small stand-ins, quicker than the app's 640x360 ones
        write_clip(examples / name, seconds=1.0, scene=scene, seed=seed)
    env = dict(os.environ, CRASHCHAT_MODEL="tiny-random", CRASHCHAT_MAX_NEW_TOKENS="6",
               CRASHCHAT_EXAMPLES_DIR=str(examples), GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not answer on {url} within 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def page(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        page.goto(app_url)
        page.wait_for_selector("#cc-video")
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    clear = page.locator("#cc-video button[aria-label='Clear']")
    if clear.count():  # a video is loaded: the file input comes back once it is cleared
        clear.click()
    page.locator("#cc-video input[type=file]").set_input_files(str(path))


@pytest.mark.browser
@needs_chromium
def test_upload_analyze_shows_six_sections_and_the_timeline(page, crash_clip):
    assert "RANDOM WEIGHTS" in page.locator("#cc-model-status").inner_text()
    _upload(page, crash_clip)
    page.locator("#cc-upload-status", has_text="Ready:").wait_for(timeout=60_000)
    page.locator("#cc-analyze").click()
    page.locator("#cc-upload-status", has_text="Done:").wait_for(timeout=120_000)
    for task_id in TASK_IDS:
        text = page.locator(f"#cc-section-{task_id}").inner_text()
        assert "waiting" not in text and "running" not in text, (task_id, text)
    assert "Verdict" in page.locator("#cc-verdict").inner_text()
    assert "RANDOM WEIGHTS" in page.locator("#cc-verdict").inner_text()
    timeline = page.locator("#cc-timeline img")
    timeline.wait_for(timeout=10_000)
    assert timeline.bounding_box()["width"] > 200
    assert page.locator("#cc-download-json").is_visible() and page.locator("#cc-download-md").is_visible()

    page.locator("#cc-suggest-crash_description").click()
    page.locator("#cc-chat", has_text="linguistic adapter").wait_for(timeout=60_000)


@pytest.mark.browser
@needs_chromium
def test_broken_upload_shows_an_error_and_the_app_stays_up(page, tmp_path, normal_clip):
    from crashchat.synthetic import write_broken

    _upload(page, write_broken(tmp_path / "broken_upload.mp4", "truncated"))
    status = page.locator("#cc-upload-status", has_text="Cannot use this file")
    status.wait_for(timeout=30_000)
    assert "broken_upload.mp4" in status.inner_text()
    _upload(page, normal_clip)  # the app still works after the bad file
    page.locator("#cc-upload-status", has_text="Ready:").wait_for(timeout=60_000)


def test_analyze_endpoint_with_gradio_client(app_url, crash_clip, tmp_path):
    from gradio_client import Client, handle_file

    # download_files=False: the report's {"video": {"path": ...}} would otherwise be taken for a file
    client = Client(app_url, verbose=False, download_files=False)
    report = client.predict(handle_file(str(crash_clip)), api_name="/analyze")
    assert Path(report["video"]["path"]).name == crash_clip.name and report["video"]["duration_s"] == 3.0
    assert report["model"]["name"] == "tiny-random" and report["model"]["random_weights"] is True
    assert set(report["tasks"]) == set(TASK_IDS)
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("hello")
    with pytest.raises(Exception, match="not_a_video.mp4: not a readable video"):
        client.predict(handle_file(str(bad)), api_name="/analyze")
