"""The leaderboard tab: Board functions, the named API through gradio_client, and a real browser.

The API and browser tests start `python app.py` (as the README does) on a free localhost port with
a temporary CRASHCHAT_DB; the browser tests drive Debian's Chromium through Playwright and are
skipped where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import csv
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from leaderboard import table
from leaderboard.scoring import score
from leaderboard.store import Store
from leaderboard.submission import read_submission
from leaderboard.ui import Board, outcome_message

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
XSS = "<img src=x onerror=alert(1)>"


def write_submission(path, split, *, seed: int, share: float = 0.01):
    rng = random.Random(seed)
    rows = [{"video": rec.video, "task": task, "response": rng.choice([rec.answer, "No", "0.5 - 1.0 seconds", ""])}
            for task, records in split.records.items() for rec in records if rng.random() < share]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def board(tmp_path, split_dir):
    return Board(Store(tmp_path / "board.sqlite3"), split_dir=split_dir, bootstrap=50)


# --- Board functions (no server) ----------------------------------------------------------------


def test_board_submit_and_views(board, split, tmp_path):
    a = board.submit([write_submission(tmp_path / "a.jsonl", split, seed=1)], XSS, "", "notes here")
    b = board.submit([write_submission(tmp_path / "b.jsonl", split, seed=2)], "second", "https://x.org")
    assert a.added and b.added
    assert outcome_message(a).startswith(f"Added as row #{a.row.id}")
    again = board.submit([tmp_path / "a.jsonl"], "dup")
    assert not again.added and "already scored" in outcome_message(again) and len(board.store.rows()) == 2

    main = board.main_table("paper")
    assert main["Kind"].tolist().count("reported") == 10 and XSS in main["Model"].tolist()
    strict = board.main_table("strict", sort_by="Crash recognition: F1 (macro)")
    assert set(strict["Kind"]) == {"verified"} and len(strict) == 2
    assert board.main_table("paper", search="second")["Model"].tolist() == ["second"]
    csv_path = board.export_csv("strict", "second")
    assert Path(csv_path).read_text(encoding="utf-8").count("\n") == 2

    rows = board.api_rows("paper")
    mine = next(r for r in rows if r["kind"] == "verified" and r["model"] == XSS)
    assert mine["crash_recognition.f1_macro"] == a.result["protocols"]["paper"]["tasks"]["crash_recognition"]["f1_macro"]

    task_df, bars = board.task_view("crash_localization", "paper", [f"verified:{a.row.id}", "paper:WSAL"])
    assert len(task_df) == 12 and set(bars["model"]) == {f"2. {XSS} (#{a.row.id})", "1. WSAL (paper)"}
    src = board.source_view(f"verified:{a.row.id}", "crash_recognition", "strict")
    assert set(src["Source"]) <= {"MM-AU-CAP", "MM-AU-DADA", "D2City", "Nexar"} and len(src) >= 2

    cmp = board.compare(f"verified:{a.row.id}", f"verified:{b.row.id}", resamples=50)
    assert len(cmp) == 6 and set(cmp["Better"]) <= {f"{XSS} (#{a.row.id})", f"second (#{b.row.id})", "neither"}
    with pytest.raises(KeyError, match="two different"):
        board.compare(f"verified:{a.row.id}", f"verified:{a.row.id}")

    worst = board.failures(f"verified:{a.row.id}", "crash_recognition", "strict", 10)
    assert len(worst) == 10 and worst["Score"].tolist()[0] == "0.0000"
    with pytest.raises(KeyError, match="verified row"):
        board.failures("paper:WSAL", "crash_recognition")

    report, message = board.validation_report([str(tmp_path / "a.jsonl")])
    assert report["Task"].tolist()[0] == "Crash recognition" and "answers match" in message
    every, verified = board.choices("paper")
    assert len(every) == 12 and [k for _, k in verified] == [f"verified:{a.row.id}", f"verified:{b.row.id}"]


def test_board_admin(board, split, tmp_path, monkeypatch):
    out = board.submit([write_submission(tmp_path / "a.jsonl", split, seed=3)], "m")
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "tok")
    with pytest.raises(PermissionError):
        board.admin("nope", "hide", out.row.id)
    assert board.admin("tok", "hide", out.row.id) == f"row #{out.row.id}: hide done"
    assert board.api_rows("strict") == []
    board.admin("tok", "unhide", out.row.id)
    assert "every row is current" in board.admin("tok", "re-score stale rows", None)
    board.admin("tok", "delete", out.row.id)
    assert board.store.rows(include_hidden=True) == []


# --- the real app: API and browser -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveApp:
    """`python app.py` on a free localhost port with its own CRASHCHAT_DB; can be restarted."""

    def __init__(self, db: Path, split_dir: Path) -> None:
        self.db, self.split_dir, self.proc, self.url = db, split_dir, None, ""

    def start(self) -> str:
        port = free_port()
        env = dict(os.environ, CRASHCHAT_DB=str(self.db), CRASHCHAT_SPLIT_DIR=str(self.split_dir),
                   GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
        env.pop("CRASHCHAT_RESULTS_REPO", None)
        self.log = self.db.parent / f"app-{port}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self.url
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"app did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, split_dir):
    """One app for the API and browser tests (starting Gradio costs seconds); the restart test restarts it."""
    app = LiveApp(tmp_path_factory.mktemp("live") / "board.sqlite3", split_dir)
    app.start()
    yield app
    app.stop()


def test_api_submit_and_leaderboard(live_app, tmp_path, split):
    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "api.jsonl", split, seed=7)
    expected = score(read_submission([path], split), split, bootstrap=0)["protocols"]
    client = Client(live_app.url, verbose=False)
    result = client.predict(files=[handle_file(str(path))], model=XSS, link="https://example.org/m",
                            notes="8 frames", api_name="/submit")
    assert result["leaderboard"]["added"] and result["split"]["sha256"] == split.sha256
    for protocol in ("paper", "strict"):
        for task, metrics in expected[protocol]["tasks"].items():
            for metric, value in metrics.items():
                assert result["protocols"][protocol]["tasks"][task][metric] == pytest.approx(value, abs=1e-12)
    rows = client.predict(api_name="/leaderboard")
    assert [r["kind"] for r in rows].count("reported") == 10
    mine = [r for r in rows if r["kind"] == "verified" and r["id"] == result["leaderboard"]["row_id"]]
    assert len(mine) == 1 and mine[0]["model"] == XSS
    assert mine[0]["link"] == "https://example.org/m" and mine[0]["notes"] == "8 frames"
    for c in table.main_columns():
        assert mine[0][c.key] == result["protocols"]["paper"]["tasks"][c.task][c.metric]
    assert all(r["kind"] == "verified" for r in client.predict("strict", api_name="/leaderboard"))
    again = client.predict(files=[handle_file(str(path))], model="again", api_name="/submit")
    assert not again["leaderboard"]["added"] and again["leaderboard"]["row_id"] == mine[0]["id"]
    with pytest.raises(Exception, match="model name"):
        client.predict(files=[handle_file(str(path))], model="", api_name="/submit")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_submit_shows_row_and_escapes_name(live_app, tmp_path, split):
    from playwright.sync_api import expect, sync_playwright

    path = write_submission(tmp_path / "browser.jsonl", split, seed=8)
    expected = score(read_submission([path], split), split, bootstrap=0)["protocols"]["paper"]["tasks"]
    f1 = f"{expected['crash_recognition']['f1_macro']:.4f}"
    name = XSS + " browser"
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(live_app.url)
            page.get_by_role("tab", name="Leaderboard").click()
            main = page.locator("#board-main")
            expect(main.get_by_text("VideoLLaMA3 7B", exact=True).first).to_be_visible(timeout=30_000)

            page.get_by_role("tab", name="Submit").click()
            page.locator("#board-model textarea, #board-model input").first.fill(name)
            page.locator("#board-files input[type=file]").set_input_files(str(path))
            # The validation report is shown before anything is added.
            page.wait_for_function(
                "() => (document.querySelector('#board-status textarea') || {}).value?.includes('answers match')",
                timeout=30_000)
            expect(page.locator("#board-validation").get_by_text("Crash recognition").first).to_be_visible()
            page.locator("#board-submit-btn").click()
            page.wait_for_function(
                "() => (document.querySelector('#board-status textarea') || {}).value?.startsWith('Added as row #')",
                timeout=60_000)

            page.get_by_role("tab", name="Table").click()
            expect(main.get_by_text(name, exact=True).first).to_be_visible(timeout=30_000)  # shown as text...
            row = main.get_by_role("row").filter(has_text=name).first
            expect(row).to_contain_text("verified")
            expect(row).to_contain_text(f1)  # the scorer's paper-protocol macro-F1, with its ±
            assert page.locator('img[src="x"]').count() == 0  # ...never turned into an element
            # Search narrows the table, and the CSV holds exactly the rows shown.
            page.get_by_label("Search").fill("browser")
            expect(main.get_by_role("row")).to_have_count(2, timeout=15_000)  # header + the new row
            with page.expect_download(timeout=30_000) as download:
                page.get_by_role("button", name="Download CSV of this view").click()
            exported = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
            assert [r["Model"] for r in exported] == [name]
            assert float(exported[0]["Crash recognition: F1 (macro)"]) == pytest.approx(
                expected["crash_recognition"]["f1_macro"])
            page.get_by_role("tab", name="Per task").click()
            page.wait_for_timeout(500)
            assert page.locator('img[src="x"]').count() == 0

            # A broken file: one line naming file, line and field, shown as text (file name included).
            bad = tmp_path / "<img src=x onerror=alert(2)>.jsonl"
            bad.write_text('{"video": "x.mp4", "task": "flying", "response": "Yes"}\n', encoding="utf-8")
            page.reload()
            page.get_by_role("tab", name="Leaderboard").click()
            page.get_by_role("tab", name="Submit").click()
            page.locator("#board-files input[type=file]").set_input_files(str(bad))
            expect(page.get_by_text(":1: task: unknown task 'flying'", exact=False).first).to_be_visible(
                timeout=30_000)
            assert page.locator('img[src="x"]').count() == 0
        finally:
            browser.close()
    assert dialogs == []


def test_restart_keeps_rows_and_dedupes(live_app, tmp_path, split):
    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "restart.jsonl", split, seed=9)
    client = Client(live_app.url, verbose=False)
    first = client.predict(files=[handle_file(str(path))], model="before restart", api_name="/submit")
    before = client.predict("strict", api_name="/leaderboard")
    live_app.stop()
    live_app.start()
    client = Client(live_app.url, verbose=False)
    assert client.predict("strict", api_name="/leaderboard") == before
    again = client.predict(files=[handle_file(str(path))], model="after restart", api_name="/submit")
    assert not again["leaderboard"]["added"] and again["leaderboard"]["row_id"] == first["leaderboard"]["row_id"]
    assert len(client.predict("strict", api_name="/leaderboard")) == len(before)
