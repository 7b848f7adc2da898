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

from crashchat import provenance
from crashchat.provenance import ProvenanceError
from crashchat.tasks import get_task
from leaderboard import table
from leaderboard.intake import SubmitError
from leaderboard.scoring import score
from leaderboard.store import Store
from leaderboard.submission import SubmissionError, read_submission
from leaderboard.ui import Board, BoardError, outcome_message

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


def write_full(path, split, *, seed: int, right: float = 0.7):
    """An answer to every question, every one readable: right with probability `right`, else a
    wrong but well-formed answer (the other label, a shifted window, another video's sentence)."""
    rng = random.Random(seed)
    rows = []
    for task, records in split.records.items():
        kind = get_task(task).kind
        for rec in records:
            if rng.random() < right:
                response = rec.answer
            elif kind == "yes_no":
                response = "No" if rec.answer.strip().lower().startswith("yes") else "Yes"
            elif kind == "time_range":
                response = f"{rng.uniform(0, 5):.1f} - {rng.uniform(5, 10):.1f} seconds"
            elif kind == "time":
                response = f"{rng.uniform(0, 8):.1f} seconds"
            else:
                response = rng.choice(records).answer
            rows.append({"video": rec.video, "task": task, "response": response})
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def blanked_copy(source: Path, dest: Path, split) -> Path:
    """The attack of issue 18: the same file with every wrong Yes/No answer set to null."""
    truth = {r.video: r.answer for r in split.records["crash_recognition"]}
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["task"] == "crash_recognition" and row["response"].lower() != truth[row["video"]].strip().lower():
            row["response"] = None
    dest.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return dest


def case_copy(source: Path, dest: Path) -> Path:
    """The same answers as the scorer reads them: `yes` for `Yes`, spaces around every sentence."""
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["response"] in ("Yes", "No"):
            row["response"] = row["response"].lower()
        elif get_task(row["task"]).kind == "text":
            row["response"] = f"  {row['response']} "
    dest.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return dest


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
    assert not again.added and "already on the board" in outcome_message(again) and len(board.store.rows()) == 2

    main = board.main_table("paper", extra=["Kind"])
    kinds = main["Kind"].tolist()
    assert kinds.count("reported") == 10 and XSS in main["Model"].tolist()
    # Both partial: below every paper row with an overall score, above the two the paper gave fewer numbers.
    assert kinds[-4:] == ["verified", "verified", "reported", "reported"]
    assert main["Model"].tolist()[-2:] == ["SimpleTAD", "WSAL"]
    strict = board.main_table("strict", sort_by="Crash recognition: F1 (macro)", extra=["Kind"])
    assert set(strict["Kind"]) == {"verified"} and len(strict) == 2
    assert board.main_table("paper", search="second")["Model"].tolist() == ["second"]
    csv_path = board.export_csv("strict", "second")
    assert Path(csv_path).read_text(encoding="utf-8").count("\n") == 2

    page = board.api_rows("paper")
    rows = page["rows"]
    assert page["total"] == 12 and page["offset"] == 0 and page["limit"] == 100
    assert [r["model"] for r in rows] == main["Model"].tolist()  # the table's default order
    assert [r["model"] for r in board.api_rows("paper", limit=3, offset=2)["rows"]] == main["Model"].tolist()[2:5]
    mine = next(r for r in rows if r["kind"] == "verified" and r["model"] == XSS)
    assert mine["crash_recognition.f1_macro"] == a.result["protocols"]["paper"]["tasks"]["crash_recognition"]["f1_macro"]
    assert mine["complete"] is False and 0 < mine["coverage"]["crash_recognition"] < 0.05

    task_df, bars = board.task_view("crash_localization", "paper", [f"verified:{a.row.id}", "paper:WSAL"])
    assert len(task_df) == 12 and bars["model"].tolist()[:2] == ["WSAL (paper)", f"{XSS} (#{a.row.id}), partial"]
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
    shown = board.view("strict")
    assert board.view("strict") == shown and board.view("strict")["value"] is shown["value"]  # cached
    assert board.api_rows("strict") is board.api_rows("strict")
    # A write through another Store object (another process) expires the caches.
    other = Store(board.store.path)
    from leaderboard.intake import submit

    submit(other, [write_submission(tmp_path / "b.jsonl", split, seed=4)], "second", split=board.split(), bootstrap=0)
    assert {r["model"] for r in board.api_rows("strict")["rows"]} == {"first", "second"}
    cached = board.view("paper", "", None, True)
    board.clear_cache()
    assert board.view("paper", "", None, True) == cached  # the uncached path shows the same
    assert a.row.id in [r.id for r in board.verified()]


def test_empty_strict_view_and_styling(board, split, tmp_path):
    shown = board.view("strict")["value"]
    assert shown["data"] == [[table.EMPTY_NOTE["strict"]] + [""] * (len(shown["headers"]) - 1)]
    board.submit([write_one_per_task(tmp_path / "one.jsonl", split)], "one per task")
    shown = board.view("strict")["value"]
    styles = shown["metadata"]["styling"][0]
    assert all("background-color" in s for s in styles)  # verified row highlighted
    partial = shown["headers"].index("Recognition\nF1 macro")
    assert shown["data"][0][partial].endswith(" partial") and "color" in styles[partial].split(";")[-1]
    assert board.view("paper")["value"]["metadata"]["styling"][0][0] == ""  # reported rows plain


def test_hidden_rows_stay_hidden(board, split, tmp_path, monkeypatch):
    out = board.submit([write_submission(tmp_path / "a.jsonl", split, seed=5)], "secret model")
    key = f"verified:{out.row.id}"
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "tok")
    board.admin("tok", "hide", out.row.id)
    assert board.api_rows("strict")["rows"] == [] and "secret model" not in str(board.api_rows("paper"))
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
    assert board.api_rows("strict")["rows"] == []
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
    row = next(r for r in board.api_rows("paper")["rows"] if r["kind"] == "verified")
    assert row["how_produced"] == expected
    frame = board.main_table("strict", extra=["How produced"])
    assert frame.loc[0, "How produced"] == expected
    exported = list(csv.DictReader(open(board.export_csv("strict"), encoding="utf-8", newline="")))
    assert exported[0]["How produced"] == expected
    # The explicit input works too (gradio_client's `provenance=`), and a row without one says so.
    other = board.submit([write_submission(tmp_path / "b.jsonl", split, seed=8)], "m2",
                         provenance_path=str(write_meta(tmp_path / "other.meta.json", id="hf:./local-dir")))
    assert other.row.provenance["model"]["id"] == "hf:./local-dir"
    third = board.submit([write_submission(tmp_path / "c.jsonl", split, seed=9)], "m3")
    assert third.row.provenance is None
    assert board.main_table("strict", search="m3", extra=["How produced"]).loc[0, "How produced"] == ""


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


# --- the attacks of issue 18, on the Board -------------------------------------------------------


@pytest.fixture(scope="module")
def attack_files(split, tmp_path_factory):
    """An honest complete file, its blanked copy, its case copy, and a one-task file (all recognition
    answers right, copied from the split)."""
    folder = tmp_path_factory.mktemp("attacks")
    honest = write_full(folder / "honest.jsonl", split, seed=40)
    one_task = folder / "one_task.jsonl"
    one_task.write_text("\n".join(json.dumps({"video": r.video, "task": "crash_recognition", "response": r.answer})
                                  for r in split.records["crash_recognition"]), encoding="utf-8")
    return {"honest": honest, "blanked": blanked_copy(honest, folder / "blanked.jsonl", split),
            "case": case_copy(honest, folder / "case.jsonl"), "one_task": one_task}


def test_blanked_and_one_task_files_rank_below_an_honest_one(board, split, attack_files):
    honest = board.submit([attack_files["honest"]], "honest")
    blanked = board.submit([attack_files["blanked"]], "blanked")
    one_task = board.submit([attack_files["one_task"]], "one task")
    assert honest.added and blanked.added and one_task.added
    paper = {p: blanked.result["protocols"][p]["tasks"]["crash_recognition"]["f1_macro"] for p in ("paper", "strict")}
    assert paper["paper"] == 1.0 > honest.result["protocols"]["paper"]["tasks"]["crash_recognition"]["f1_macro"]
    for protocol in ("paper", "strict"):
        rows = board.api_rows(protocol)["rows"]
        order = [r["model"] for r in rows if r["kind"] == "verified"]
        assert order == ["honest", "blanked", "one task"], protocol
        by = {r["model"]: r for r in rows}
        assert by["honest"]["complete"] and not by["blanked"]["complete"] and not by["one task"]["complete"]
        answered = by["blanked"]["answered"]["crash_recognition"]
        assert answered[0] < answered[1] == 1839  # nulls are not answers
        assert by["one task"]["answered"]["crash_localization"] == [0, 1162]
        # Every complete paper row ranks above both (they are partial), whatever their numbers.
        names = [r["model"] for r in rows]
        for r in rows:
            if r["kind"] == "reported" and r["overall"] is not None:
                assert names.index(r["model"]) < names.index("blanked")
        table_order = board.main_table(protocol)["Model"].tolist()
        assert table_order.index("honest") < table_order.index("blanked") < table_order.index("one task")
        exported = list(csv.DictReader(open(board.export_csv(protocol), encoding="utf-8", newline="")))
        models = [r["Model"] for r in exported]
        assert models.index("honest") < models.index("blanked") < models.index("one task")
        row = next(r for r in exported if r["Model"] == "blanked")
        assert row["Crash recognition: answered"] == f"{answered[0]:,}/1,839" and row["Complete"] == "False"
    shown = board.main_table("paper").set_index("Model")
    assert shown.loc["blanked", "Recognition\nF1 macro"].endswith(" partial")
    assert shown.loc["blanked", "Answered"].endswith(" partial")
    # The paper protocol still drops the nulls from its metric; strict scores them as wrong, as the
    # wrong answers they replaced were.
    assert paper["strict"] == honest.result["protocols"]["strict"]["tasks"]["crash_recognition"]["f1_macro"]


def test_case_copy_is_already_on_the_board(board, split, attack_files):
    first = board.submit([attack_files["honest"]], "honest")
    again = board.submit([attack_files["case"]], "honest, lower case")
    assert first.added and not again.added and again.row.id == first.row.id
    assert "already on the board" in outcome_message(again) and len(board.store.rows()) == 1


@pytest.mark.parametrize("name, says", [
    ("VideoLLaMA3 7B", "the paper's row 'VideoLLaMA3 7B'"), ("videollama3 7b ", "the paper's row"),
    ("\u0421rash\u0421hat-7B (heterogeneous multitask)", "the paper's row 'CrashChat-7B (heterogeneous multitask)'"),
    ("My model (paper)", "'(paper)' marks"), ("taken by bob", "of bob"), ("Taken  by BOB", "of bob"),
])
def test_names_that_are_not_yours_are_refused(board, split, tmp_path, name, says):
    from leaderboard.identity import NameRefused, Submitter

    board.submit([write_submission(tmp_path / "bob.jsonl", split, seed=41)], "taken by bob",
                 who=Submitter("bob", "huggingface"))
    with pytest.raises(NameRefused) as refused:
        board.submit([write_submission(tmp_path / "a.jsonl", split, seed=42)], name,
                     who=Submitter("alice", "huggingface"))
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert [r.model for r in board.store.rows()] == ["taken by bob"]


def test_a_name_is_used_once_per_submitter(board, split, tmp_path):
    from leaderboard.identity import NameRefused

    board.submit([write_submission(tmp_path / "a.jsonl", split, seed=43)], "mine")
    with pytest.raises(NameRefused, match="you already have a row named 'mine'"):
        board.submit([write_submission(tmp_path / "b.jsonl", split, seed=44)], "Mine")
    assert board.submit([write_submission(tmp_path / "b.jsonl", split, seed=44)], "mine v2").added


def test_on_a_space_submitting_needs_sign_in_and_is_limited(board, split, tmp_path, monkeypatch):
    import gradio as gr

    from leaderboard import ui
    from leaderboard.identity import RateLimited, SignInRequired

    monkeypatch.setenv("SPACE_ID", "someone/crashchat")
    monkeypatch.setenv("CRASHCHAT_SUBMIT_LIMIT", "2")
    monkeypatch.setenv("CRASHCHAT_ADMINS", "carol")
    with pytest.raises(SignInRequired, match="Sign in with Hugging Face"):
        board.submit([write_submission(tmp_path / "a.jsonl", split, seed=45)], "anonymous")
    with pytest.raises(SignInRequired):
        ui.who_submits(None, None)
    alice = ui.who_submits(gr.OAuthProfile({"name": "Alice", "preferred_username": "alice", "profile": "",
                                            "picture": ""}))
    assert (alice.name, alice.via) == ("alice", "huggingface")
    for i in range(2):
        assert board.submit([write_submission(tmp_path / f"s{i}.jsonl", split, seed=46 + i)], f"a{i}", who=alice).added
    with pytest.raises(RateLimited, match=r"2 submissions in 24 hours per submitter; your next one is possible at "):
        board.submit([write_submission(tmp_path / "s3.jsonl", split, seed=48)], "a3", who=alice)
    carol = ui.who_submits(gr.OAuthProfile({"name": "", "preferred_username": "carol", "profile": "", "picture": ""}))
    for i in range(3):  # admins are exempt
        assert board.submit([write_submission(tmp_path / f"c{i}.jsonl", split, seed=50 + i)], f"c{i}", who=carol).added
    assert {r.submitter for r in board.store.rows()} == {"alice", "carol"}
    assert {r["submitter"] for r in board.api_rows("strict")["rows"]} == {"alice", "carol"}


def test_sign_in_button_only_on_a_space_with_oauth(tmp_path, split_dir, monkeypatch):
    import gradio as gr

    from leaderboard import ui

    def built() -> bool:
        with gr.Blocks() as demo:
            ui.build(Board(Store(tmp_path / "b.sqlite3"), split_dir=split_dir, bootstrap=0))
        return demo.expects_oauth

    for name in ("SPACE_ID", "SYSTEM", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert not built()  # locally: no sign-in
    monkeypatch.setenv("SPACE_ID", "someone/crashchat")
    monkeypatch.setenv("SYSTEM", "spaces")
    assert not built()  # a Space without hf_oauth: no login route to offer (API tokens still work)
    # With hf_oauth: true the Space sets these before Gradio is imported (gradio.oauth reads them then).
    import gradio.oauth

    for name, value in [("OAUTH_CLIENT_ID", "from-the-space"), ("OAUTH_CLIENT_SECRET", "s"),
                        ("OAUTH_SCOPES", "openid profile"), ("OPENID_PROVIDER_URL", "https://huggingface.co")]:
        monkeypatch.setenv(name, value)
        monkeypatch.setattr(gradio.oauth, name, value)
    assert built()


@pytest.mark.parametrize("name, content, expected", [
    ("sur.jsonl", '{"video": "V", "task": "crash_description", "response": "a car \\ud800 hits"}',
     "sur.jsonl:1: response: lone surrogate \\ud800"),
    ("big.json", '[{"video_path": "V", "pred_time": ' + "9" * 5000 + "}]",
     "big.json:1: pred_time: number with 5,000 digits (at most 30)"),
    ("quote.csv", 'video,task,response\nV,crash_recognition,Yes\nV2,crash_recognition,"No\nV3,crash_recognition,Yes\n',
     "quote.csv:3: unclosed quote"),
])
def test_hostile_files_are_refused_in_one_line(board, split, tmp_path, name, content, expected):
    videos = split.records["crash_recognition"]
    path = tmp_path / name
    content = content.replace("V3,", videos[2].video + ",").replace("V2,", videos[1].video + ",")
    path.write_text(content.replace('"V"', json.dumps(videos[0].video)).replace("\nV,", "\n" + videos[0].video + ","),
                    encoding="utf-8")
    with pytest.raises(SubmissionError) as refused:
        board.submit([path], "hostile")
    assert str(refused.value).startswith(expected) and "\n" not in str(refused.value)
    assert board.store.rows(include_hidden=True) == [] and path.exists()


def test_uploads_and_exports_are_never_taken_away(board, split, tmp_path):
    """The app deletes no file it did not create: an upload stays where Gradio put it, after a
    submission and after a refusal; every CSV export is a new file of the board's own."""
    good = write_submission(tmp_path / "good.jsonl", split, seed=53)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops", encoding="utf-8")
    board.submit([good], "kept")
    with pytest.raises(SubmissionError):
        board.submit([bad], "refused")
    assert good.exists() and bad.exists()
    first, second = board.export_csv("paper"), board.export_csv("paper")
    assert first != second and Path(first).read_bytes() == Path(second).read_bytes()
    assert Path(first).is_relative_to(board._csv_dir)


def test_the_tab_says_when_the_split_is_missing(tmp_path, monkeypatch):
    from leaderboard import split as split_module
    from leaderboard import ui

    monkeypatch.delenv("CRASHCHAT_SPLIT_DIR", raising=False)
    monkeypatch.setattr(split_module, "cache_root", lambda: tmp_path / "empty-cache")
    monkeypatch.setattr(ui, "cache_dir", split_module.cache_dir)
    assert "set CRASHCHAT_SPLIT_DIR" in ui.split_notice() and "downloaded from GitHub" in ui.split_notice()
    assert "does not exist" in ui.split_notice(tmp_path / "nowhere")
    folder = tmp_path / "here"
    folder.mkdir()
    assert ui.split_notice(folder) == ""


# --- the real app: API and browser -------------------------------------------------------------


def test_api_submit_and_leaderboard(live_board, tmp_path, split):
    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "api.jsonl", split, seed=11)
    expected = score(read_submission([path], split), split, bootstrap=0)["protocols"]
    client = Client(live_board.url, verbose=False)
    result = client.predict(files=[handle_file(str(path))], model=XSS, link="https://example.org/m",
                            notes="8 frames", api_name="/submit")
    assert result["leaderboard"]["added"] and result["split"]["sha256"] == split.sha256
    for protocol in ("paper", "strict"):
        for task, metrics in expected[protocol]["tasks"].items():
            for metric, value in metrics.items():
                assert result["protocols"][protocol]["tasks"][task][metric] == pytest.approx(value, abs=1e-12)
    page = client.predict(api_name="/leaderboard")
    rows = page["rows"]
    assert [r["kind"] for r in rows].count("reported") == 10 and page["total"] == len(rows) and page["limit"] == 100
    mine = [r for r in rows if r["kind"] == "verified" and r["id"] == result["leaderboard"]["row_id"]]
    assert len(mine) == 1 and mine[0]["model"] == XSS and mine[0]["complete"] is False
    assert mine[0]["submitter"] == result["leaderboard"]["submitter"] != ""
    assert mine[0]["link"] == "https://example.org/m" and mine[0]["notes"] == "8 frames"
    assert mine[0]["overall"] == result["overall"]["value"] and mine[0]["overall_from"] == "strict"
    for c in table.main_columns()[1:]:
        assert mine[0][c.key] == result["protocols"]["paper"]["tasks"][c.task][c.metric]
    assert all(r["kind"] == "verified" for r in client.predict("strict", api_name="/leaderboard")["rows"])
    assert client.predict("paper", False, 2, 1, api_name="/leaderboard")["rows"] == rows[1:3]
    # The upload is Gradio's: the app read it and left it where it was.
    assert [p for p in live_board.uploads.rglob("api.jsonl")]
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
    row = next(r for r in client.predict("strict", api_name="/leaderboard")["rows"] if r["model"] == "with provenance")
    assert row["how_produced"] == provenance.describe(provenance.example()) and "provenance" not in row
    detailed = next(r for r in client.predict("strict", True, api_name="/leaderboard")["rows"] if r["id"] == row["id"])
    assert detailed["provenance"] == provenance.loads(meta.read_bytes()) and "crash_recognition" in detailed["metrics"]


def test_api_partial_rows_rank_last_and_csv_export(live_board, tmp_path, split):
    """The check of issue 9: a one-answer-per-task file and a full file; the partial row is marked and
    ranked after complete rows in /leaderboard and /export_csv; formula names come back neutralised."""
    from gradio_client import Client, handle_file

    client = Client(live_board.url, verbose=False)
    one = client.predict(files=[handle_file(str(write_one_per_task(tmp_path / "one.jsonl", split)))],
                         model="one answer per task", api_name="/submit")
    full_path = write_full(tmp_path / "full.jsonl", split, seed=13)
    full = client.predict(files=[handle_file(str(full_path))], model=FORMULA, api_name="/submit")
    assert one["leaderboard"]["added"] and full["leaderboard"]["added"]
    for protocol in ("paper", "strict"):
        rows = client.predict(protocol, api_name="/leaderboard")["rows"]
        names = [r["model"] for r in rows]
        partial = names.index("one answer per task")
        # after it only partial rows, and the paper rows without an overall score (too few numbers printed)
        assert all(r["complete"] is False or r["overall"] is None for r in rows[partial:])
        assert names.index(FORMULA) < partial and rows[names.index(FORMULA)]["complete"] is True
        assert rows[partial]["coverage"]["crash_recognition"] == pytest.approx(1 / 1839)
        exported = list(csv.DictReader(open(client.predict(protocol, api_name="/export_csv"), encoding="utf-8",
                                            newline="")))
        assert [r["Model"] for r in exported] == ["'" + n if n == FORMULA else n for n in names]
        assert exported[names.index("one answer per task")]["Complete"] == "False"
    for endpoint in ("/export_csv", "/leaderboard"):
        with pytest.raises(Exception, match="loose|protocol"):
            client.predict("loose", api_name=endpoint)
    for bad in ([0, 0], [5000, 0], [10, -1], [1.5, 0]):
        with pytest.raises(Exception, match="limit|offset|whole number"):
            client.predict("paper", False, *bad, api_name="/leaderboard")
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
    count = client.predict("strict", api_name="/leaderboard")["total"]
    for files in ([csv_copy], halves):
        again = client.predict(files=[handle_file(str(p)) for p in files], model="copy", api_name="/submit")
        assert not again["leaderboard"]["added"] and again["leaderboard"]["row_id"] == full["leaderboard"]["row_id"]
    assert client.predict("strict", api_name="/leaderboard")["total"] == count


def test_api_same_file_from_several_clients_at_once(live_board, tmp_path, split):
    """Gradio keeps byte-identical uploads at one path; the app never deletes it, so every client
    either adds the row or is told it is already on the board, none fails on a vanished file."""
    import threading

    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "same.jsonl", split, seed=16, share=0.02)
    results, errors = [], []
    start = threading.Barrier(6)

    def one(i: int) -> None:
        try:
            client = Client(live_board.url, verbose=False)
            start.wait()
            results.append(client.predict(files=[handle_file(str(path))], model=f"same file {i}", api_name="/submit"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r["leaderboard"]["added"] for r in results) == [False] * 5 + [True]
    assert len({r["leaderboard"]["row_id"] for r in results}) == 1
    assert "No such file" not in live_board.log.read_text()


def test_api_attacks_of_issue_18(live_board, tmp_path, split):
    """Through the running app: a blanked copy and a one-task file rank below the honest file they
    came from; a look-alike of a paper row's name and a case copy add no row."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(live_board.url, verbose=False)
    honest = write_full(tmp_path / "api_honest.jsonl", split, seed=17)
    one_task = tmp_path / "api_one_task.jsonl"
    one_task.write_text("\n".join(json.dumps({"video": r.video, "task": "crash_recognition", "response": r.answer})
                                  for r in split.records["crash_recognition"][::-1]), encoding="utf-8")
    for path, name in [(honest, "api honest"), (blanked_copy(honest, tmp_path / "api_blanked.jsonl", split),
                                                 "api blanked"), (one_task, "api one task")]:
        assert client.predict(files=[handle_file(str(path))], model=name, api_name="/submit")["leaderboard"]["added"]
    for protocol in ("paper", "strict"):
        names = [r["model"] for r in client.predict(protocol, api_name="/leaderboard", limit=1000)["rows"]]
        assert names.index("api honest") < names.index("api blanked") < names.index("api one task"), protocol
    total = client.predict("strict", api_name="/leaderboard")["total"]
    with pytest.raises(AppError, match="the paper's row 'Qwen3-VL 32B'"):
        client.predict(files=[handle_file(str(write_full(tmp_path / "api_lookalike.jsonl", split, seed=18)))],
                       model="Qw\u0435n3-VL 32B ", api_name="/submit")
    copy = client.predict(files=[handle_file(str(case_copy(honest, tmp_path / "api_case.jsonl")))],
                          model="api honest again", api_name="/submit")
    assert not copy["leaderboard"]["added"] and copy["leaderboard"]["model"] == "api honest"
    assert client.predict("strict", api_name="/leaderboard")["total"] == total


@pytest.mark.parametrize("name, content, expected", [
    ("deep.json", "[" * 100000, "deep.json:1: not valid JSON (nested too deeply"),
    ("nan.json", '[{"video_path": "V", "pred_start": NaN, "pred_end": 1}]', "nan.json:1: pred_start: non-finite number NaN"),
    ("long.jsonl", json.dumps({"video": "V", "task": "crash_recognition", "response": "x" * 17000}),
     "long.jsonl:1: response: 17000 characters, over the 16384-character limit"),
    ("html.jsonl", '{"video": "V", "task": "<a href=x>t</a>", "response": "Yes"}', "html.jsonl:1: task: unknown task"),
    ("sur.jsonl", '{"video": "V", "task": "crash_description", "response": "\\ud800"}',
     "sur.jsonl:1: response: lone surrogate \\ud800"),
    ("big.jsonl", '{"video": "V", "task": "crash_recognition", "response": ' + "7" * 5000 + "}",
     "big.jsonl:1: response: number with 5,000 digits (at most 30)"),
    ("quote.csv", 'video,task,response\nV,crash_recognition,"Yes\nW,crash_recognition,No\n', "quote.csv:2: unclosed quote"),
])
def test_api_hostile_files_fail_in_one_line(live_board, tmp_path, split, name, content, expected):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / name
    videos = split.records["crash_recognition"]
    content = content.replace('"V"', json.dumps(videos[0].video)).replace("\nV,", f"\n{videos[0].video},")
    path.write_text(content.replace("\nW,", f"\n{videos[1].video},"), encoding="utf-8")
    client = Client(live_board.url, verbose=False)
    with pytest.raises(AppError) as info:
        client.predict(files=[handle_file(str(path))], model="hostile", api_name="/submit")
    message = str(info.value)
    assert message.startswith(expected) and "\n" not in message and "Traceback" not in message
    log = live_board.log.read_text()
    assert "RecursionError" not in log and "UnicodeEncodeError" not in log and "Exceeds the limit" not in log


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_attacks_partial_dedup_errors_and_csv(live_board, tmp_path, split):
    """As a researcher (and an attacker) would: a complete file and a one-answer-per-task file, a
    shuffled, a case and a blanked copy, a look-alike of a paper row's name, a name with mathtext,
    the hostile files; the strict table, the chart and the CSV. Screenshots of the table and of the
    Submit tab after a broken upload go to CRASHCHAT_SHOTS_DIR (default: the test's tmp folder)."""
    import os

    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("CRASHCHAT_SHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    complete = write_full(tmp_path / "browser_full.jsonl", split, seed=14)
    partial = write_one_per_task(tmp_path / "browser_one.jsonl", split, index=1)
    expected = score(read_submission([complete], split), split, bootstrap=0)
    overall = f"{expected['overall']['value']:.4f}"
    name = "=cmd|' /C calc'!A0 browser " + XSS
    math_name = r"atk $\undefinedcmd$ browser model"
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 1000})
            # Generous waits: each step is a queued event, and a busy 2-core CI machine is slow.
            page.set_default_timeout(60_000)
            expect.set_options(timeout=30_000)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(live_board.url)
            page.get_by_role("tab", name="Leaderboard").click()
            main = page.locator("#board-main")
            expect(main.get_by_text("VideoLLaMA3 7B", exact=True).first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("is one number per row: the mean of six headline metrics")).to_be_visible()
            status = page.locator("#board-status textarea")
            result = page.locator("#board-result")

            def upload(path: Path | list[Path], model: str, wait_for: str) -> None:
                page.get_by_role("tab", name="Submit").click()
                page.locator("#board-model textarea, #board-model input").first.fill(model)
                paths = path if isinstance(path, list) else [path]
                page.locator("#board-files input[type=file]").set_input_files([str(p) for p in paths])
                expect(status).to_have_value(re.compile(wait_for), timeout=60_000)

            def submit(path: Path | list[Path], model: str, wait_for: str) -> None:
                upload(path, model, "answers match")
                page.locator("#board-submit-btn").click()
                expect(status).to_have_value(re.compile(wait_for), timeout=90_000)

            meta = write_meta(tmp_path / "browser_full.jsonl.meta.json")
            produced = provenance.describe(provenance.example())
            submit([complete, meta], name, r"^Added as row #")
            expect(status).to_have_value(re.compile(re.escape(f"How produced: {produced}.")))
            submit(partial, "one per task (browser)", r"^Added as row #")
            # The same answers shuffled, or in another case: pointed at the existing row, nothing added.
            submit(shuffled_copy(complete, tmp_path / "browser_shuffled.jsonl"), "shuffled browser", "already on")
            expect(status).to_have_value(re.compile("No row added"))
            submit(case_copy(complete, tmp_path / "browser_case.jsonl"), "case browser", "already on the board")
            submit(blanked_copy(complete, tmp_path / "browser_blanked.jsonl", split), "blanked browser", "^Added")
            # A paper row's name with a Cyrillic letter: refused, and the files stay in the box.
            submit(write_full(tmp_path / "browser_other.jsonl", split, seed=19, right=0.4), "Qwen3-VL 32\u0412",
                   r"^Error: model name: .* the paper's row 'Qwen3-VL 32B'")
            expect(page.locator("#board-files").get_by_role("cell", name="browser_other.jsonl")).to_have_count(1)
            # The same files with a name of its own: no re-upload needed.
            page.locator("#board-model textarea, #board-model input").first.fill(math_name)
            page.locator("#board-submit-btn").click()
            expect(status).to_have_value(re.compile("^Added as row #"), timeout=90_000)

            page.get_by_role("tab", name="Table").click()
            page.locator("#board-protocol").get_by_label("strict", exact=True).check()
            page.get_by_label("Search").fill("browser")
            rows = main.get_by_role("row")
            expect(rows).to_have_count(5, timeout=30_000)  # header + four rows
            expect(rows.nth(1)).to_contain_text(overall)  # the complete row first, with its overall score
            expect(rows.nth(1)).to_contain_text(name)  # the name shown as text
            expect(rows.nth(2)).to_contain_text(math_name)
            expect(rows.nth(3)).to_contain_text("blanked browser")  # partial: below every complete row
            expect(rows.nth(3)).to_contain_text("partial")
            expect(rows.nth(4)).to_contain_text("one per task (browser)")
            assert main.get_by_text("shuffled browser", exact=True).count() == 0
            assert page.locator('img[src="x"]').count() == 0
            # The default columns fit a 1280-px screen: no horizontal scrolling.
            fits = page.evaluate("""() => { const v = document.querySelector('#board-main .virtual-table-viewport')
                                    || document.querySelector('#board-main table');
                                    return v.scrollWidth <= v.clientWidth + 1; }""")
            assert fits
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "table_strict.png"), full_page=True)
            with page.expect_download(timeout=30_000) as download:
                page.get_by_role("button", name="Download CSV of this view").click()
            exported = list(csv.DictReader(open(download.value.path(), encoding="utf-8", newline="")))
            assert [r["Model"] for r in exported] == ["'" + name, math_name, "blanked browser",
                                                      "one per task (browser)"]
            assert [r["Complete"] for r in exported] == ["True", "True", "False", "False"]
            assert float(exported[0]["Overall (mean of six headline metrics)"]) == pytest.approx(
                expected["overall"]["value"])

            # The chart draws the mathtext name literally, for every visitor.
            page.get_by_role("tab", name="Per task").click()
            picker = page.get_by_label("Rows in the chart (or type #id)")
            picker.fill(math_name[:12])
            page.get_by_role("option", name=re.compile(re.escape(math_name))).first.click()
            bars = page.locator("#board-bars")
            expect(bars.locator("img")).to_have_count(1, timeout=30_000)
            page.wait_for_timeout(1000)
            assert bars.get_by_text("Error").count() == 0 and page.locator(".toast-body.error").count() == 0

            # Hostile files: one line each in the Status box, as text; the last result is cleared and
            # the file stays in the box.
            videos = split.records["crash_recognition"]
            hostile = [
                ("sur.jsonl", json.dumps({"video": videos[0].video, "task": "crash_description", "response": "x"})
                 .replace('"x"', '"\\ud800"'), "sur.jsonl:1: response: lone surrogate"),
                ("big.jsonl", json.dumps({"video": videos[0].video, "task": "crash_recognition", "response": 1})
                 .replace(": 1}", ": " + "9" * 5000 + "}"),
                 "big.jsonl:1: response: number with 5,000 digits"),
                ("quote.csv", f'video,task,response\n{videos[0].video},crash_recognition,"Yes\n'
                              f'{videos[1].video},crash_recognition,No\n', "quote.csv:2: unclosed quote"),
            ]
            page.get_by_role("tab", name="Submit").click()
            expect(result).to_contain_text("leaderboard")  # the last submission's scorer JSON
            for file_name, content, message in hostile:
                bad = tmp_path / file_name
                bad.write_text(content, encoding="utf-8")
                page.locator("#board-files input[type=file]").set_input_files(str(bad))
                expect(status).to_have_value(re.compile("^Error: " + re.escape(message)), timeout=30_000)
                expect(result).not_to_contain_text("leaderboard")
                expect(page.locator("#board-files").get_by_role("cell", name=file_name)).to_have_count(1)
                page.locator("#board-files").get_by_label("Clear").first.click()
                expect(status).to_have_value(re.compile("Upload one or more"), timeout=30_000)
            bad = tmp_path / "<img src=x onerror=alert(2)>.jsonl"
            bad.write_text('{"video": "x.mp4", "task": "<form action=https://evil.example><input name=q>'
                           '<a href=https://evil.example>click</a></form>", "response": "Yes"}\n', encoding="utf-8")
            page.locator("#board-files input[type=file]").set_input_files(str(bad))
            expect(status).to_have_value(re.compile(r"^Error: .*:1: task: unknown task '<form"), timeout=30_000)
            page.wait_for_timeout(2_000)  # time for anything the file's name or text could inject to render
            # (Gradio drops `<` and `>` from uploaded file names; the file's text is shown as it is.)
            assert re.match(r"Error: img src=x onerror=alert\(2\)\.jsonl:1: task: unknown task '<form action=",
                            status.input_value())
            assert page.locator('form[action="https://evil.example"]').count() == 0
            assert page.locator('a[href="https://evil.example"]').count() == 0
            assert page.locator('img[src="x"]').count() == 0
            expect(page.locator("#board-files")).to_contain_text("onerror")  # kept: nothing is deleted
            page.screenshot(path=str(shots / "submit_after_broken_upload.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []


def test_restart_keeps_rows_and_dedupes(live_board, tmp_path, split):
    from gradio_client import Client, handle_file

    path = write_submission(tmp_path / "restart.jsonl", split, seed=15)
    client = Client(live_board.url, verbose=False)
    first = client.predict(files=[handle_file(str(path))], model="before restart", api_name="/submit")
    before = client.predict("strict", api_name="/leaderboard")
    live_board.stop()
    live_board.start()
    client = Client(live_board.url, verbose=False)
    assert client.predict("strict", api_name="/leaderboard") == before
    again = client.predict(files=[handle_file(str(path))], model="after restart", api_name="/submit")
    assert not again["leaderboard"]["added"] and again["leaderboard"]["row_id"] == first["leaderboard"]["row_id"]
    assert client.predict("strict", api_name="/leaderboard")["total"] == before["total"]


def test_evaluation_requests_share_the_submit_limit_and_duplicates_are_free(tmp_path, split_dir, monkeypatch):
    from transformers import Qwen2VLConfig

    from leaderboard.evaluations import RequestRefused
    from leaderboard.identity import RateLimited, Submitter
    from leaderboard.ui import QUEUE_COLUMNS

    monkeypatch.setenv("CRASHCHAT_ALLOW_LOCAL_MODELS", "1")
    monkeypatch.setenv("CRASHCHAT_SUBMIT_LIMIT", "2")
    folders = []
    for name in ("a", "b", "c"):
        Qwen2VLConfig().save_pretrained(tmp_path / name)
        folders.append(str(tmp_path / name))
    board = Board(Store(tmp_path / "board.sqlite3"), split_dir=split_dir, bootstrap=20)
    alice, bob = Submitter("alice", "local"), Submitter("bob", "local")
    first = board.request_evaluation(folders[0], who=alice)
    assert not first["duplicate"] and first["status"] == "pending"
    for _ in range(3):  # asking again for a queued model costs nothing
        assert board.request_evaluation(folders[0], "main", "paper", who=alice)["request_id"] == first["request_id"]
    board.request_evaluation(folders[1], who=alice)
    with pytest.raises(RateLimited, match="2 submissions in 24 hours"):
        board.request_evaluation(folders[2], who=alice)
    board.request_evaluation(folders[2], who=bob)
    with pytest.raises(RequestRefused, match="frames: 'all' is not a frame policy"):
        board.request_evaluation(folders[2], "main", "all", who=bob)
    shown = board.evaluation_frame()
    assert list(shown.columns) == QUEUE_COLUMNS and shown["Status"].tolist() == ["pending"] * 3
    assert shown["Place"].tolist() == ["3", "2", "1"] and "alice" not in shown.to_string()


def test_evaluated_rows_are_shown_and_filtered_apart(tmp_path, split, split_dir):
    from leaderboard.identity import Submitter
    from leaderboard.intake import submit
    from leaderboard.ui import EVALUATED_STYLE, VERIFIED_STYLE

    board = Board(Store(tmp_path / "board.sqlite3"), split_dir=split_dir, bootstrap=20)
    board.submit([str(write_full(tmp_path / "v.jsonl", split, seed=31))], "self-reported", who=Submitter("a", "local"))
    block = {"request_id": 4, "model": "org/vlm", "worker": "gpu-box", "gpu": "NVIDIA H200", "gpus": 1,
             "code_version": "crashchat 0.1 (abc1234)", "seconds": 10.0}
    submit(board.store, [write_full(tmp_path / "e.jsonl", split, seed=32)], "org/vlm", split=split,
           submitter=Submitter("b", "evaluation"), bootstrap=20, evaluation=block)
    assert [r.model for r in board.ordered("strict", "kind:evaluated")] == ["org/vlm"]
    assert [r.model for r in board.ordered("paper", table.with_kind("kind:evaluated", "verified"))] == ["self-reported"]
    assert {r.kind for r in board.ordered("paper", "kind:reported")} == {"reported"}
    assert table.with_kind("qwen kind:verified", "all") == "qwen"
    page = board.api_rows("strict", kind="evaluated")
    [row] = page["rows"]
    assert page["total"] == 1 and row["evaluation"] == block
    assert row["how_produced"] == "evaluated here (request #4, gpu-box, NVIDIA H200, crashchat 0.1 (abc1234))"
    assert "evaluation" not in board.api_rows("strict", kind="verified")["rows"][0]
    with pytest.raises(BoardError, match="kind must be empty"):
        board.api_rows("strict", kind="everything")
    shown = board.view("strict")["value"]
    first_cells = {cells[0]: styles[0]
                   for cells, styles in zip(shown["data"], shown["metadata"]["styling"], strict=True)}
    assert first_cells == {"self-reported": VERIFIED_STYLE, "org/vlm": EVALUATED_STYLE}


def test_request_messages_say_what_was_queued():
    from leaderboard.ui import _request_message

    hub = {"request_id": 3, "status": "pending", "duplicate": False, "model": "org/vlm", "revision": "main",
           "commit": "a" * 40, "frames": "paper"}
    assert _request_message(hub).startswith("Queued as request #3: org/vlm at commit aaaaaaaaaaaa (revision main), "
                                            "frames paper.")
    local = {**hub, "commit": "", "model": "/m", "duplicate": True, "status": "running"}
    assert _request_message(local) == ("Already asked: request #3 for /m (a local folder), frames paper is running. "
                                       "Nothing new was queued.")
