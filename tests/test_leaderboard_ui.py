"""The leaderboard tab: Board functions, the named API through gradio_client, and a real browser.

The API and browser tests start `python app.py` (as the README does) on a free localhost port with
a temporary CRASHCHAT_DB and GRADIO_TEMP_DIR; the browser tests drive Debian's Chromium through
Playwright and are skipped where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest
from live_app import LiveApp

from crashchat import provenance
from crashchat.provenance import ProvenanceError
from leaderboard import table
from leaderboard.intake import SubmitError
from leaderboard.scoring import score
from leaderboard.store import Store
from leaderboard.submission import read_submission
from leaderboard.ui import Board, BoardError, display_value, outcome_message

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
XSS = "<img src=x onerror=alert(1)>"
FORMULA = '=HYPERLINK("http://evil.example","click me")'


def write_submission(path, split, *, seed: int, share: float = 0.01):
    rng = random.Random(seed)
    rows = [{"video": rec.video, "task": task, "response": rng.choice([rec.answer, "No", "0.5 - 1.0 seconds", ""])}
            for task, records in split.records.items() for rec in records if rng.random() < share]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def write_one_per_task(path, split, index: int = 0):
    """The attack of issue 9: one correct answer per task (6 answers), perfect scores from n=1."""
    rows = [{"video": records[index].video, "task": task, "response": records[index].answer}
            for task, records in split.records.items()]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def shuffled_copy(source: Path, dest: Path, seed: int = 0) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(lines)
    dest.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return dest


def write_meta(path: Path, **changes) -> Path:
    meta = provenance.example()
    meta["model"].update(changes)
    path.write_text(json.dumps(meta), encoding="utf-8")
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
    again = board.submit([shuffled_copy(tmp_path / "a.jsonl", tmp_path / "a2.jsonl")], "dup")
    assert not again.added and "already scored" in outcome_message(again) and len(board.store.rows()) == 2

    main = board.main_table("paper")
    assert main["Kind"].tolist().count("reported") == 10 and XSS in main["Model"].tolist()
    assert main["Kind"].tolist()[-2:] == ["verified", "verified"]  # both partial: below every paper row
    strict = board.main_table("strict", sort_by="Crash recognition: F1 (macro)")
    assert set(strict["Kind"]) == {"verified"} and len(strict) == 2
    assert board.main_table("paper", search="second")["Model"].tolist() == ["second"]
    csv_path = board.export_csv("strict", "second")
    assert Path(csv_path).read_text(encoding="utf-8").count("\n") == 2

    rows = board.api_rows("paper")
    assert [r["model"] for r in rows] == main["Model"].tolist()  # the table's default order
    mine = next(r for r in rows if r["kind"] == "verified" and r["model"] == XSS)
    assert mine["crash_recognition.f1_macro"] == a.result["protocols"]["paper"]["tasks"]["crash_recognition"]["f1_macro"]
    assert mine["complete"] is False and 0 < mine["coverage"]["crash_recognition"] < 0.05

    task_df, bars = board.task_view("crash_localization", "paper", [f"verified:{a.row.id}", "paper:WSAL"])
    assert len(task_df) == 12 and bars["model"].tolist()[:2] == ["WSAL (paper)", f"{XSS} (#{a.row.id})"]
    assert task_df["Answered"].tolist()[-1].endswith("partial")
    src = board.source_view(f"verified:{a.row.id}", "crash_recognition", "strict")
    assert set(src["Source"]) <= {"MM-AU-CAP", "MM-AU-DADA", "D2City", "Nexar"} and len(src) >= 2

    cmp = board.compare(f"verified:{a.row.id}", f"verified:{b.row.id}", resamples=50)
    assert len(cmp) == 6 and set(cmp["Better"]) <= {f"{XSS} (#{a.row.id})", f"second (#{b.row.id})", "neither"}
    with pytest.raises(BoardError, match="two different"):
        board.compare(f"verified:{a.row.id}", f"verified:{a.row.id}")

    worst = board.failures(f"verified:{a.row.id}", "crash_recognition", "strict", 10)
    assert len(worst) == 10 and worst["Score"].tolist()[0] == "0.0000"
    with pytest.raises(BoardError, match="verified row"):
        board.failures("paper:WSAL", "crash_recognition")

    report, message = board.validation_report([str(tmp_path / "a.jsonl")])
    assert report["Task"].tolist()[0] == "Crash recognition" and "answers match" in message
    every, verified = board.choices("paper")
    assert len(every) == 12 and {k for _, k in verified} == {f"verified:{a.row.id}", f"verified:{b.row.id}"}
    details = board.details(f"verified:{a.row.id}")
    assert details["model"] == XSS and details["provenance"] is None and details["files"][0]["name"] == "a.jsonl"


def test_views_are_cached_until_the_store_changes(board, split, tmp_path):
    a = board.submit([write_submission(tmp_path / "a.jsonl", split, seed=3)], "first")
    shown, path = board.view("strict")
    assert board.view("strict") == (shown, path) and board.view("strict")[0] is shown  # cached
    assert board.api_rows("strict") is board.api_rows("strict")
    # A write through another Store object (another process) expires the caches.
    other = Store(board.store.path)
    from leaderboard.intake import submit

    submit(other, [write_submission(tmp_path / "b.jsonl", split, seed=4)], "second", split=board.split(), bootstrap=0)
    assert {r["model"] for r in board.api_rows("strict")} == {"first", "second"}
    cached = board.view("paper", "", None, True)
    board.clear_cache()
    assert board.view("paper", "", None, True) == cached  # the uncached path shows the same
    assert a.row.id in [r.id for r in board.verified()]


def test_empty_strict_view_and_styling(board, split, tmp_path):
    shown, _ = board.view("strict")
    assert shown["data"] == [[table.EMPTY_NOTE["strict"]] + [""] * (len(shown["headers"]) - 1)]
    board.submit([write_one_per_task(tmp_path / "one.jsonl", split)], "one per task")
    shown, _ = board.view("strict")
    styles = shown["metadata"]["styling"][0]
    assert all("background-color" in s for s in styles)  # verified row highlighted
    partial = shown["headers"].index("Recognition\nF1 macro")
    assert shown["data"][0][partial].endswith(" partial") and "color" in styles[partial].split(";")[-1]
    assert display_value(board.main_table("paper"))["metadata"]["styling"][0][0] == ""  # reported rows plain


def test_hidden_rows_stay_hidden(board, split, tmp_path, monkeypatch):
    out = board.submit([write_submission(tmp_path / "a.jsonl", split, seed=5)], "secret model")
    key = f"verified:{out.row.id}"
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "tok")
    board.admin("tok", "hide", out.row.id)
    assert board.api_rows("strict") == [] and "secret model" not in str(board.api_rows("paper"))
    assert board.choices("paper")[1] == []
    # A page opened before the row was hidden still holds its key: nothing comes back.
    for call in (lambda: board.details(key), lambda: board.failures(key, "crash_recognition"),
                 lambda: board.source_view(key, "crash_recognition", "strict"),
                 lambda: board.compare(key, key + "0"), lambda: board.submission(key)):
        with pytest.raises(BoardError, match="hidden"):
            call()
    assert board.task_view("crash_recognition", "paper", [key])[1].empty
    # Submitting the same answers again says nothing of the hidden row.
    with pytest.raises(SubmitError) as refused:
        board.submit([shuffled_copy(tmp_path / "a.jsonl", tmp_path / "b.jsonl")], "probe")
    assert "secret model" not in str(refused.value) and out.row.submitted_at not in str(refused.value)


def test_admin_checks_the_token_before_its_inputs(board, split, tmp_path, monkeypatch):
    out = board.submit([write_submission(tmp_path / "a.jsonl", split, seed=6)], "m")
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "tok")
    for action, row_id in [("bogus", None), ("hide", float("nan")), ("delete", -1), ("hide", 1.5)]:
        with pytest.raises(PermissionError):
            board.admin("nope", action, row_id)
        with pytest.raises(BoardError):
            board.admin("tok", action, row_id)
    assert board.admin("tok", "hide", out.row.id) == f"row #{out.row.id}: hide done"
    assert board.api_rows("strict") == []
    board.admin("tok", "unhide", float(out.row.id))
    assert "every row is current" in board.admin("tok", "re-score stale rows", None)
    board.admin("tok", "delete", out.row.id)
    assert board.store.rows(include_hidden=True) == []


def test_provenance_is_validated_stored_and_shown(board, split, tmp_path):
    preds = write_submission(tmp_path / "qwen.jsonl", split, seed=7)
    meta = write_meta(tmp_path / "qwen.jsonl.meta.json")
    expected = provenance.describe(provenance.loads(meta.read_bytes()))
    report, message = board.validation_report([str(preds), str(meta)])
    assert f"How produced: {expected}." in message and report["Matched"].sum() > 0
    out = board.submit([preds, meta], "Qwen3-VL 8B zero-shot")
    assert out.added and out.row.provenance == provenance.loads(meta.read_bytes())
    assert [name for name, _ in out.row.files] == ["qwen.jsonl"]  # the provenance is not a prediction file
    plain = score(read_submission([preds], split), split, bootstrap=50)
    assert out.result["protocols"] == json.loads(json.dumps(plain["protocols"]))  # never changes scores
    key = f"verified:{out.row.id}"
    assert board.details(key)["how_produced"] == expected and board.details(key)["provenance"]["model"]["family"] == "qwen3_vl"
    row = next(r for r in board.api_rows("paper") if r["kind"] == "verified")
    assert row["how_produced"] == expected
    frame = board.main_table("strict")
    assert frame.loc[0, "How produced"] == expected
    exported = list(csv.DictReader(open(board.export_csv("strict"), encoding="utf-8", newline="")))
    assert exported[0]["How produced"] == expected
    # The explicit input works too (gradio_client's `provenance=`), and a row without one says so.
    other = board.submit([write_submission(tmp_path / "b.jsonl", split, seed=8)], "m2",
                         provenance_path=str(write_meta(tmp_path / "other.meta.json", id="hf:./local-dir")))
    assert other.row.provenance["model"]["id"] == "hf:./local-dir"
    third = board.submit([write_submission(tmp_path / "c.jsonl", split, seed=9)], "m3")
    assert third.row.provenance is None and board.main_table("strict", search="m3").loc[0, "How produced"] == ""


@pytest.mark.parametrize("content, expected", [
    (b"{", "bad.meta.json:1: not valid JSON"),
    (b"[]", "bad.meta.json: file: expected a JSON object, got list"),
    (json.dumps({**provenance.example(), "extra": 1}).encode(), "bad.meta.json: extra: unknown field"),
    (json.dumps({**provenance.example(), "format": "other/9"}).encode(), "bad.meta.json: format: expected"),
    (json.dumps({**provenance.example(), "model": {**provenance.example()["model"], "dtype": "<b>\u202e"}}).encode(),
     "bad.meta.json: model.dtype: invisible or bidi character U+202E"),
    (json.dumps({**provenance.example(), "model": {**provenance.example()["model"], "id": "a\u2028b"}}).encode(),
     "bad.meta.json: model.id: invisible or bidi character U+2028"),
    (b"x" * (provenance.MAX_BYTES + 1), f"bad.meta.json: file is {provenance.MAX_BYTES + 1} bytes, over the"),
])
def test_bad_provenance_is_refused_in_one_line(board, split, tmp_path, content, expected):
    preds = write_submission(tmp_path / "p.jsonl", split, seed=10)
    meta = tmp_path / "bad.meta.json"
    meta.write_bytes(content)
    with pytest.raises((ProvenanceError, SubmitError)) as info:
        board.submit([preds, meta], "m")
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    assert board.store.rows(include_hidden=True) == []
    with pytest.raises(SubmitError, match="2 provenance files"):
        board.submit([preds, write_meta(tmp_path / "a.meta.json"), write_meta(tmp_path / "b.meta.json")], "m")


# --- the real app: API and browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, split_dir):
    """One app for the API and browser tests (starting Gradio costs seconds); the restart test restarts it."""
    app = LiveApp(tmp_path_factory.mktemp("live") / "board.sqlite3", split_dir)
    app.start()
    yield app
    app.stop()


def test_api_submit_and_leaderboard(live_app, tmp_path, split):
    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "api.jsonl", split, seed=11)
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
    assert len(mine) == 1 and mine[0]["model"] == XSS and mine[0]["complete"] is False
    assert mine[0]["link"] == "https://example.org/m" and mine[0]["notes"] == "8 frames"
    for c in table.main_columns():
        assert mine[0][c.key] == result["protocols"]["paper"]["tasks"][c.task][c.metric]
    assert all(r["kind"] == "verified" for r in client.predict("strict", api_name="/leaderboard"))
    # Uploaded files are deleted once processed.
    assert not [p for p in live_app.uploads.rglob("*.jsonl")]
    # The same answers shuffled, with the provenance passed explicitly: no new row.
    again = client.predict(files=[handle_file(str(shuffled_copy(path, tmp_path / "again.jsonl")))], model="again",
                           provenance=handle_file(str(write_meta(tmp_path / "p.meta.json"))), api_name="/submit")
    assert not again["leaderboard"]["added"] and again["leaderboard"]["row_id"] == mine[0]["id"]
    with pytest.raises(Exception, match="model name"):
        client.predict(files=[handle_file(str(path))], model="", api_name="/submit")
    # A new row with its provenance, given among the files by its name.
    meta = write_meta(tmp_path / "qwen.jsonl.meta.json")
    produced = client.predict(files=[handle_file(str(write_submission(tmp_path / "qwen.jsonl", split, seed=12))),
                                     handle_file(str(meta))], model="with provenance", api_name="/submit")
    assert produced["leaderboard"]["provenance"]["model"]["id"] == "hf:Qwen/Qwen3-VL-8B-Instruct"
    row = next(r for r in client.predict("strict", api_name="/leaderboard") if r["model"] == "with provenance")
    assert row["how_produced"] == provenance.describe(provenance.example()) and "provenance" not in row
    detailed = next(r for r in client.predict("strict", True, api_name="/leaderboard") if r["id"] == row["id"])
    assert detailed["provenance"] == provenance.loads(meta.read_bytes()) and "crash_recognition" in detailed["metrics"]


def test_api_partial_rows_rank_last_and_csv_export(live_app, tmp_path, split):
    """The check of issue 9: a one-answer-per-task file and a full file; the partial row is marked and
    ranked after complete rows in /leaderboard and /export_csv; formula names come back neutralised."""
    from gradio_client import Client, handle_file

    client = Client(live_app.url, verbose=False)
    one = client.predict(files=[handle_file(str(write_one_per_task(tmp_path / "one.jsonl", split)))],
                         model="one answer per task", api_name="/submit")
    full_path = write_submission(tmp_path / "full.jsonl", split, seed=13, share=1.0)
    full = client.predict(files=[handle_file(str(full_path))], model=FORMULA, api_name="/submit")
    assert one["leaderboard"]["added"] and full["leaderboard"]["added"]
    for protocol in ("paper", "strict"):
        rows = client.predict(protocol, api_name="/leaderboard")
        names = [r["model"] for r in rows]
        partial = names.index("one answer per task")
        assert all(r["complete"] is False for r in rows[partial:])  # only partial rows after it
        assert names.index(FORMULA) < partial and rows[names.index(FORMULA)]["complete"] is True
        assert rows[partial]["coverage"]["crash_recognition"] == pytest.approx(1 / 1839)
        exported = list(csv.DictReader(open(client.predict(protocol, api_name="/export_csv"), encoding="utf-8",
                                            newline="")))
        assert [r["Model"] for r in exported] == ["'" + n if n == FORMULA else n for n in names]
        assert exported[names.index("one answer per task")]["Complete"] == "False"
    for endpoint in ("/export_csv", "/leaderboard"):
        with pytest.raises(Exception, match="loose|protocol"):
            client.predict("loose", api_name=endpoint)
    # Re-laid-out copies add no row: CSV, and the same rows split over two files.
    csv_copy = tmp_path / "full.csv"
    rows = [json.loads(line) for line in full_path.read_text().splitlines()]
    with open(csv_copy, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "task", "response"])
        writer.writerows([r["video"], r["task"], r["response"]] for r in rows[::-1])
    halves = [tmp_path / "h1.jsonl", tmp_path / "h2.jsonl"]
    halves[0].write_text("\n".join(json.dumps(r) for r in rows[1::2]))
    halves[1].write_text("\n".join(json.dumps(r) for r in rows[::2]))
    count = len(client.predict("strict", api_name="/leaderboard"))
    for files in ([csv_copy], halves):
        again = client.predict(files=[handle_file(str(p)) for p in files], model="copy", api_name="/submit")
        assert not again["leaderboard"]["added"] and again["leaderboard"]["row_id"] == full["leaderboard"]["row_id"]
    assert len(client.predict("strict", api_name="/leaderboard")) == count


@pytest.mark.parametrize("name, content, expected", [
    ("deep.json", "[" * 100000, "deep.json:1: not valid JSON (nested too deeply"),
    ("nan.json", '[{"video_path": "V", "pred_start": NaN, "pred_end": 1}]', "nan.json:1: pred_start: non-finite number NaN"),
    ("long.jsonl", json.dumps({"video": "V", "task": "crash_recognition", "response": "x" * 17000}),
     "long.jsonl:1: response: 17000 characters, over the 16384-character limit"),
    ("html.jsonl", '{"video": "V", "task": "<a href=x>t</a>", "response": "Yes"}', "html.jsonl:1: task: unknown task"),
])
def test_api_hostile_files_fail_in_one_line(live_app, tmp_path, split, name, content, expected):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / name
    path.write_text(content.replace('"V"', json.dumps(split.records["crash_recognition"][0].video)), encoding="utf-8")
    client = Client(live_app.url, verbose=False)
    with pytest.raises(AppError) as info:
        client.predict(files=[handle_file(str(path))], model="hostile", api_name="/submit")
    message = str(info.value)
    assert message.startswith(expected) and "\n" not in message and "Traceback" not in message
    assert "RecursionError" not in live_app.log.read_text()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_partial_dedup_errors_and_csv(live_app, tmp_path, split):
    """As a researcher would: a complete and a partial file, a shuffled resubmission, a hostile file,
    the strict table and its CSV."""
    from playwright.sync_api import expect, sync_playwright

    complete = write_submission(tmp_path / "browser_full.jsonl", split, seed=14, share=1.0)
    partial = write_one_per_task(tmp_path / "browser_one.jsonl", split, index=1)
    expected = score(read_submission([complete], split), split, bootstrap=0)["protocols"]["strict"]["tasks"]
    f1 = f"{expected['crash_recognition']['f1_macro']:.4f}"
    name = "=cmd|' /C calc'!A0 browser " + XSS
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(live_app.url)
            page.get_by_role("tab", name="Leaderboard").click()
            main = page.locator("#board-main")
            expect(main.get_by_text("VideoLLaMA3 7B", exact=True).first).to_be_visible(timeout=30_000)
            status = page.locator("#board-status textarea")

            def submit(path: Path | list[Path], model: str, wait_for: str) -> None:
                page.get_by_role("tab", name="Submit").click()
                page.locator("#board-model textarea, #board-model input").first.fill(model)
                paths = path if isinstance(path, list) else [path]
                page.locator("#board-files input[type=file]").set_input_files([str(p) for p in paths])
                expect(status).to_have_value(re.compile("answers match"), timeout=60_000)
                page.locator("#board-submit-btn").click()
                expect(status).to_have_value(re.compile(wait_for), timeout=90_000)

            meta = write_meta(tmp_path / "browser_full.jsonl.meta.json")
            produced = provenance.describe(provenance.example())
            submit([complete, meta], name, r"^Added as row #")
            expect(status).to_have_value(re.compile(re.escape(f"How produced: {produced}.")))
            submit(partial, "one per task (browser)", r"^Added as row #")
            # The same answers shuffled: pointed at the existing row, nothing added.
            submit(shuffled_copy(complete, tmp_path / "browser_shuffled.jsonl"), "shuffled", r"already scored")
            expect(status).to_have_value(re.compile("No row added"))

            page.get_by_role("tab", name="Table").click()
            page.locator("#board-protocol").get_by_label("strict", exact=True).check()
            page.get_by_label("Search").fill("browser")
            rows = main.get_by_role("row")
            expect(rows).to_have_count(3, timeout=30_000)  # header + the two rows
            expect(rows.nth(1)).to_contain_text(f1)  # the complete row first, with its score
            expect(rows.nth(1)).to_contain_text(name)  # the name shown as text
            expect(rows.nth(1)).to_contain_text(produced)  # the How produced column
            expect(rows.nth(2)).to_contain_text("one per task (browser)")
            expect(rows.nth(2)).to_contain_text("partial")
            assert main.get_by_text("shuffled", exact=True).count() == 0
            assert page.locator('img[src="x"]').count() == 0
            with page.expect_download(timeout=30_000) as download:
                page.get_by_role("button", name="Download CSV of this view").click()
            exported = list(csv.DictReader(open(download.value.path(), encoding="utf-8", newline="")))
            assert [r["Model"] for r in exported] == ["'" + name, "one per task (browser)"]
            assert [r["Complete"] for r in exported] == ["True", "False"]
            assert float(exported[0]["Crash recognition: F1 (macro)"]) == pytest.approx(
                expected["crash_recognition"]["f1_macro"])

            # A hostile file: the error stays in the Submit tab as text, long after a toast would fade.
            bad = tmp_path / "<img src=x onerror=alert(2)>.jsonl"
            bad.write_text('{"video": "x.mp4", "task": "<form action=https://evil.example><input name=q>'
                           '<a href=https://evil.example>click</a></form>", "response": "Yes"}\n', encoding="utf-8")
            page.get_by_role("tab", name="Submit").click()
            page.locator("#board-files input[type=file]").set_input_files(str(bad))
            expect(status).to_have_value(re.compile(r"^Error: .*:1: task: unknown task '<form"),
                                         timeout=30_000)
            page.wait_for_timeout(12_000)
            # (Gradio drops `<` and `>` from uploaded file names; the file's text is shown as it is.)
            assert re.match(r"Error: img src=x onerror=alert\(2\)\.jsonl:1: task: unknown task '<form action=",
                            status.input_value())
            assert page.locator('form[action="https://evil.example"]').count() == 0
            assert page.locator('a[href="https://evil.example"]').count() == 0
            assert page.locator('img[src="x"]').count() == 0
            assert not list(live_app.uploads.rglob("*onerror*"))  # the refused upload is deleted
        finally:
            browser.close()
    assert dialogs == []


def test_restart_keeps_rows_and_dedupes(live_app, tmp_path, split):
    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "restart.jsonl", split, seed=15)
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
