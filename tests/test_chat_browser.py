"""The chat tab end to end: `python app.py` with the tiny model, driven by headless Chromium and by
gradio_client's `/analyze`, as a user and an API client would.

Browser tests need Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it) and are skipped
without it; run them alone with `pytest -m browser tests/test_chat_browser.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crashchat.tasks import TASK_IDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium")


@pytest.fixture(scope="module")
def app_url(live_board) -> str:
    """The session's `python app.py` (conftest's `live_board`): CRASHCHAT_MODEL=tiny-random, as the
    README starts it, with up to 24 new tokens."""
    return live_board.url.rstrip("/")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Screenshots of each step, for a person to look at when a test fails."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def page(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        page.goto(app_url)
        page.wait_for_selector("#cc-upload")
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    clear = page.locator("#cc-upload button[aria-label='Clear']")
    if clear.count():  # a file is loaded: the drop zone comes back once it is cleared
        clear.click()
    page.locator("#cc-upload input[type=file]").set_input_files(str(path))


def _record_disabled(page, elem_id: str) -> None:
    """Note every change of a button's `disabled` state (a run may be over before we could look)."""
    page.evaluate("""id => {
        const button = document.getElementById(id);
        window.ccStates = [button.disabled];
        new MutationObserver(() => window.ccStates.push(button.disabled))
            .observe(button, {attributes: true, attributeFilter: ['disabled']});
    }""", elem_id)


def _band_pixels(png: bytes, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of a screenshot have (about) this colour."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=-1) <= tolerance).sum())


# The crash window: timeline.COLORS["crash"] (214, 39, 40) at alpha 0.3 over white.
CRASH_BAND = tuple(round(255 * 0.7 + c * 0.3) for c in (214, 39, 40))


@pytest.mark.browser
@needs_chromium
def test_upload_analyze_shows_the_verdict_timeline_window_and_key_frames(page, crash_clip, shots):
    status = page.locator("#cc-model-status").inner_text()
    assert "RANDOM WEIGHTS" in status and "up to 24 new tokens" in status and "guided decoding on" in status
    assert page.locator("#cc-analyze").is_disabled()  # nothing to analyze yet
    _upload(page, crash_clip)
    page.locator("#cc-upload-status", has_text="Ready:").wait_for(timeout=60_000)
    page.locator("#cc-video video").wait_for(timeout=10_000)  # the preview plays the upload
    _record_disabled(page, "cc-send")
    page.locator("#cc-analyze").click()
    page.locator("#cc-upload-status", has_text="Done:").wait_for(timeout=120_000)
    page.wait_for_function("window.ccStates.at(-1) === false", timeout=10_000)
    # locked while the run went on, then unlocked: no second request could be queued meanwhile
    assert page.evaluate("window.ccStates") == [False, True, False]
    for task_id in TASK_IDS:
        text = page.locator(f"#cc-section-{task_id}").inner_text()
        assert "waiting" not in text and "running" not in text, (task_id, text)
    verdict = page.locator("#cc-verdict").inner_text()
    assert "Verdict: crash detected" in verdict and "RANDOM WEIGHTS" in verdict
    assert "guided" in page.locator("#cc-section-crash_localization").inner_text()
    frames = page.locator("#cc-keyframes img")
    frames.first.wait_for(timeout=10_000)
    assert frames.count() >= 1 and "crash start" in page.locator("#cc-keyframes").inner_text()
    timeline = page.locator("#cc-timeline img")
    timeline.wait_for(timeout=10_000)
    assert timeline.bounding_box()["width"] > 200
    assert _band_pixels(timeline.screenshot(), CRASH_BAND) > 500, "no crash window drawn on the timeline"
    assert page.locator("#cc-download-json").is_visible() and page.locator("#cc-download-md").is_visible()
    assert page.locator(".toast-body").count() == 0
    page.screenshot(path=str(shots / "analyzed.png"), full_page=True)

    # five turns, questions and task buttons (whose full prompts are long): after each answer the
    # newest turn is in the chat box's visible part, not below its fold
    turns = [("question", "Why did the car swerve?"), ("task", "crash_localization"), ("question", "When does it brake?"),
             ("task", "crash_description"), ("task", "prevention_reasoning")]
    for n, (kind, what) in enumerate(turns, start=1):
        if kind == "task":
            page.locator(f"#cc-suggest-{what}").click()
        else:
            page.locator("#cc-question textarea").fill(what)
            page.locator("#cc-send").click()
        page.wait_for_function(f"document.querySelectorAll('#cc-chat .message-row.user-row').length === {n}",
                               timeout=60_000)
        page.wait_for_function("!document.getElementById('cc-send').disabled", timeout=60_000)
        page.wait_for_timeout(300)  # the last streamed update is drawn
        box = page.locator("#cc-chat .bubble-wrap").bounding_box()
        asked = page.locator("#cc-chat .message-row.user-row").last.bounding_box()
        answer = page.locator("#cc-chat .message-row").last.bounding_box()
        bottom = box["y"] + box["height"]
        assert asked["y"] + asked["height"] > box["y"], (n, "the question scrolled away", box, asked)
        assert box["y"] <= answer["y"] < bottom - 40, (n, "the newest answer is below the fold", box, answer)
        assert "adapter" in page.locator("#cc-chat .message-row").last.inner_text()  # that is the finished answer
    assert "\ufffd" not in page.locator("#cc-chat").inner_text()  # undecodable bytes show as [?], not U+FFFD
    for task_id in TASK_IDS:
        assert "\ufffd" not in page.locator(f"#cc-section-{task_id}").inner_text()
    page.locator("#cc-chat").screenshot(path=str(shots / "chat.png"))


@pytest.mark.browser
@needs_chromium
def test_broken_upload_shows_exactly_one_message_and_the_app_stays_up(page, tmp_path, normal_clip, shots):
    from crashchat.synthetic import write_broken

    _upload(page, write_broken(tmp_path / "broken_upload.mp4", "truncated"))
    status = page.locator("#cc-upload-status", has_text="Cannot use this file")
    status.wait_for(timeout=90_000)  # generous: the check decodes in a child process, slow on a busy machine
    page.wait_for_timeout(1500)  # a player's own error would show up by now
    assert "broken_upload.mp4" in status.inner_text()
    assert page.get_by_text("Cannot use this file").count() == 1
    assert page.get_by_text("not playable").count() == 0 and page.locator(".toast-body").count() == 0
    assert not page.locator("#cc-video video").count()  # the broken file never reaches the player
    assert page.locator("#cc-analyze").is_disabled() and page.locator("#cc-send").is_disabled()
    page.screenshot(path=str(shots / "broken.png"))
    _upload(page, normal_clip)  # the app still works after the bad file
    page.locator("#cc-upload-status", has_text="Ready:").wait_for(timeout=60_000)
    page.wait_for_function("!document.getElementById('cc-analyze').disabled", timeout=10_000)


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

