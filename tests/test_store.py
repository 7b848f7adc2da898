"""The leaderboard store, without Gradio: SQLite persistence, dedupe, concurrency, re-scoring, admin."""

from __future__ import annotations

import bz2
import contextlib
import csv
import errno
import json
import random
import sqlite3
import threading
import zlib
from pathlib import Path

import pytest

from leaderboard import SCORER_VERSION
from leaderboard import store as store_mod
from leaderboard.__main__ import main as cli
from leaderboard.hubsync import HubSync
from leaderboard.identity import NameRefused
from leaderboard.intake import (
    MAX_REQUEST_BYTES,
    SubmitError,
    check_entry,
    read_upload,
    rescore,
    stored_submission,
    submit,
)
from leaderboard.scoring import score
from leaderboard.store import SCHEMA_VERSION, RowNotFound, Store, StoreError, pack_answers
from leaderboard.submission import SubmissionError, canonical_rows, read_submission, scored_digest

XSS = "<img src=x onerror=alert(1)>"


def write_submission(path, split, *, seed: int, share: float = 0.02):
    """Our JSONL layout: a random share of the split, answered right, wrong or garbled."""
    rng = random.Random(seed)
    rows = []
    for task, records in split.records.items():
        for rec in records:
            if rng.random() < share:
                response = rng.choice([rec.answer, "Yes 1.0 - 2.0 seconds", "", "no idea"])
                rows.append({"video": rec.video, "task": task, "response": response})
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path):
    return Store(tmp_path / "board.sqlite3")


def test_schema_wal_and_user_dir(tmp_path, monkeypatch):
    s = Store(tmp_path / "a" / "b.sqlite3")
    assert s.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(s.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setenv("CRASHCHAT_DB", str(tmp_path / "env.sqlite3"))
    assert Store().path == tmp_path / "env.sqlite3"
    monkeypatch.delenv("CRASHCHAT_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store_mod.default_db_path() == tmp_path / "xdg" / "crashchat" / "leaderboard.sqlite3"


def test_newer_schema_is_refused(db):
    with sqlite3.connect(db.path) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer"):
        Store(db.path)


def test_a_path_that_is_not_a_database_is_one_line_and_left_as_it_was(tmp_path, capsys):
    """CRASHCHAT_DB (or --db) at someone's file, a folder, or under a file: a `StoreError` naming
    the path (one line from the CLI and the app), and the file is not touched."""
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"my notes, not a database\n")
    (tmp_path / "folder").mkdir()
    for path, why in [(junk, "file is not a database"), (tmp_path / "folder", "unable to open database file"),
                      (junk / "sub" / "db.sqlite3", "cannot create its folder")]:
        with pytest.raises(StoreError) as caught:
            Store(path)
        assert str(caught.value).startswith(f"{path}: ") and why in str(caught.value)
        assert cli(["list", "--db", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: ") and err.count("\n") == 1
    assert junk.read_bytes() == b"my notes, not a database\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.txt"]  # no -wal or -journal left


def test_entry_rules():
    check_entry(XSS)  # any printable text is a valid name; it is rendered as text, never HTML
    check_entry("x" * 80, "https://example.org/model", "line one\nline two")
    for bad, field in [("", "model name"), ("   ", "model name"), ("x" * 81, "model name"),
                       ("tab\there", "model name"), ("new\nline", "model name")]:
        with pytest.raises(SubmitError, match=field):
            check_entry(bad)
    for hidden, name in [("\u202e", "RIGHT-TO-LEFT OVERRIDE"), ("\u200b", "ZERO WIDTH SPACE"),
                         ("\u2066", "LEFT-TO-RIGHT ISOLATE"), ("\ufeff", "ZERO WIDTH NO-BREAK SPACE")]:
        with pytest.raises(SubmitError, match=f"model name: character U\\+{ord(hidden):04X} \\({name}\\)"):
            check_entry(f"good{hidden}model")
    with pytest.raises(SubmitError, match="link"):
        check_entry("m", "javascript:alert(1)")
    with pytest.raises(SubmitError, match="notes"):
        check_entry("m", "", "x" * 5000)


def test_upload_limits_are_checked_before_reading(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("1")
    b.write_text("2")
    assert read_upload([a, b]).files_sha256 == read_upload([b, a]).files_sha256 != read_upload([a]).files_sha256
    with pytest.raises(SubmitError, match=r"a.jsonl: file is 1 bytes, over the 0-byte limit"):
        read_upload([a], max_bytes=0)
    with pytest.raises(SubmitError, match="no prediction file"):
        read_upload([])
    with pytest.raises(SubmitError, match="13 files, at most 12"):
        read_upload([a] * 13)
    with pytest.raises(SubmitError, match=r"files: 2 bytes together, over the 1-byte limit of one submission"):
        read_upload([a, b], max_request_bytes=1)
    assert MAX_REQUEST_BYTES == 100 * 1024**2


def test_submit_scores_stores_and_dedupes(db, split, tmp_path):
    path = write_submission(tmp_path / "sub.jsonl", split, seed=1)
    out = submit(db, [path], XSS, split=split, link="https://example.org", notes="n", bootstrap=50)
    assert out.added and out.row.model == XSS and out.row.link == "https://example.org"
    expected = score(read_submission([path], split), split, bootstrap=50)
    assert out.result["protocols"] == json.loads(json.dumps(expected["protocols"]))
    assert out.result["leaderboard"]["row_id"] == out.row.id
    assert out.row.split_sha256 == split.sha256 and out.row.scorer_version == SCORER_VERSION
    # The same answers (another file name, another order, a trailing newline, CSV, two files)
    # point at the existing row, whatever model name comes with them.
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    random.Random(0).shuffle(rows)
    copy = tmp_path / "renamed.jsonl"
    copy.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    csv_copy = tmp_path / "same.csv"
    with open(csv_copy, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "task", "response"])
        writer.writerows([r["video"], r["task"], r["response"]] for r in rows)
    halves = [tmp_path / "h1.jsonl", tmp_path / "h2.jsonl"]
    halves[0].write_text("\n".join(json.dumps(r) for r in rows[::2]))
    halves[1].write_text("\n".join(json.dumps(r) for r in rows[1::2]))
    for paths in ([copy], [csv_copy], halves):
        again = submit(db, paths, "someone else", split=split, bootstrap=50)
        assert not again.added and again.row.id == out.row.id and again.row.model == XSS
    assert len(db.rows()) == 1
    # The stored answers give back the same submission.
    rebuilt = stored_submission(db, out.row.id, split)
    assert score(rebuilt, split, bootstrap=50)["protocols"] == expected["protocols"]
    assert out.row.answers_sha256 == scored_digest(read_submission([path], split).answers)


def test_submit_errors_are_one_line(db, split, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "x.mp4", "task": "flying", "response": "Yes"}\n')
    with pytest.raises(SubmissionError, match=r"bad.jsonl:1: task"):
        submit(db, [bad], "m", split=split, bootstrap=0)
    with pytest.raises(SubmitError, match="model name"):
        submit(db, [bad], "", split=split, bootstrap=0)
    assert db.rows() == []


def test_twenty_concurrent_submissions_lose_nothing(db, split, tmp_path):
    paths = [write_submission(tmp_path / f"s{i}.jsonl", split, seed=100 + i, share=0.005) for i in range(20)]
    errors, outcomes = [], []
    start = threading.Barrier(20)

    def one(i):
        try:
            start.wait()
            # Each thread uses its own Store object too: separate connections, like separate workers.
            outcomes.append(submit(Store(db.path), [paths[i]], f"model {i}", split=split, bootstrap=0))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = db.rows()
    assert len(rows) == 20 and all(o.added for o in outcomes)
    assert sorted(r.model for r in rows) == sorted(f"model {i}" for i in range(20))
    assert len({r.id for r in rows}) == 20


def test_concurrent_duplicates_make_one_row(db, split, tmp_path):
    path = write_submission(tmp_path / "same.jsonl", split, seed=5, share=0.005)
    sub = read_submission([path], split)
    result = score(sub, split, bootstrap=0)
    upload = read_upload([path])
    answers = pack_answers(canonical_rows(sub.answers))
    added = []

    def one():
        added.append(Store(db.path).add(model="m", answers_sha256=scored_digest(sub.answers),
                                        files_sha256=upload.files_sha256, files=upload.files, result=result,
                                        answers=answers)[1])

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert added.count(True) == 1 and len(db.rows()) == 1


def test_restart_keeps_every_row(tmp_path, split):
    path = tmp_path / "board.sqlite3"
    first = Store(path)
    for i in range(3):
        submit(first, [write_submission(tmp_path / f"r{i}.jsonl", split, seed=i, share=0.005)], f"m{i}",
               split=split, bootstrap=0)
    before = [r.as_dict() for r in first.rows()]
    del first
    again = Store(path)
    assert [r.as_dict() for r in again.rows()] == before


def test_rescore_updates_stale_rows_only(db, split, tmp_path):
    old = submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=3)], "old", split=split, bootstrap=0)
    new = submit(db, [write_submission(tmp_path / "b.jsonl", split, seed=4)], "new", split=split, bootstrap=0)
    # Pretend row `old` was scored by an earlier scorer that got recognition wrong.
    stale = dict(db.result(old.row.id), scorer_version="0.0.1")
    stale["protocols"] = json.loads(json.dumps(stale["protocols"]))
    stale["protocols"]["strict"]["tasks"]["crash_recognition"]["f1_macro"] = 0.123
    db.update_result(old.row.id, stale)
    assert db.get(old.row.id).scorer_version == "0.0.1"
    lines = rescore(db, split, bootstrap=0)
    assert len(lines) == 1 and lines[0].startswith(f"#{old.row.id} 'old': re-scored (scorer 0.0.1 -> ")
    fixed = db.get(old.row.id)
    assert fixed.scorer_version == SCORER_VERSION and fixed.rescored_at
    assert db.result(fixed.id)["protocols"] == json.loads(json.dumps(old.result["protocols"]))
    assert db.get(new.row.id).rescored_at == ""  # current rows untouched
    assert len(rescore(db, split, force=True, bootstrap=0)) == 2
    assert rescore(db, split, bootstrap=0) == []


def test_admin_hide_and_delete(db, split, tmp_path, monkeypatch):
    out = submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=9, share=0.005)], "m", split=split,
                 bootstrap=0)
    monkeypatch.delenv("CRASHCHAT_ADMIN_TOKEN", raising=False)
    with pytest.raises(PermissionError, match="not set"):
        db.set_hidden(out.row.id, True, admin_token="anything")
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "s3cret")
    with pytest.raises(PermissionError, match="wrong admin token"):
        db.delete(out.row.id, admin_token="guess")
    db.set_hidden(out.row.id, True, admin_token="s3cret")
    assert db.rows() == [] and db.rows(include_hidden=True)[0].hidden
    # A hidden row still dedupes, and nothing of it comes back: the submission is refused.
    with pytest.raises(SubmitError) as refused:
        submit(db, [tmp_path / "a.jsonl"], "m2", split=split, bootstrap=0)
    assert "hidden by an admin" in str(refused.value) and "'m'" not in str(refused.value)
    assert len(db.rows(include_hidden=True)) == 1
    db.delete(out.row.id, admin_token="s3cret")
    assert db.rows(include_hidden=True) == []
    with pytest.raises(RowNotFound, match=f"no leaderboard row #{out.row.id}"):
        db.delete(out.row.id, admin_token="s3cret")


def test_snapshot_is_a_consistent_copy(db, split, tmp_path):
    submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=11, share=0.005)], "m", split=split, bootstrap=0)
    copy = Store(db.snapshot(tmp_path / "copy.sqlite3"))
    assert [r.as_dict() for r in copy.rows()] == [r.as_dict() for r in db.rows()]


def test_hub_sync_only_when_configured(db, monkeypatch):
    monkeypatch.delenv("CRASHCHAT_RESULTS_REPO", raising=False)
    monkeypatch.setenv("HF_TOKEN", "x")
    assert HubSync.from_env(db) is None
    monkeypatch.setenv("CRASHCHAT_RESULTS_REPO", "someone/results")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert HubSync.from_env(db) is None
    monkeypatch.setenv("HF_TOKEN", "x")
    sync = HubSync.from_env(db)
    assert sync is not None and sync.repo_id == "someone/results" and sync.enabled


def test_cli_list_rescore_and_admin(db, split, split_dir, tmp_path, monkeypatch, capsys):
    out = submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=12, share=0.005)], XSS, split=split,
                 bootstrap=0)
    assert cli(["list", "--db", str(db.path)]) == 0
    assert repr(XSS) in capsys.readouterr().out
    assert cli(["rescore", "--db", str(db.path), "--split-dir", str(split_dir), "--bootstrap", "0"]) == 0
    assert "every row is current" in capsys.readouterr().out
    monkeypatch.delenv("CRASHCHAT_ADMIN_TOKEN", raising=False)
    assert cli(["hide", "--db", str(db.path), str(out.row.id)]) == 2
    assert capsys.readouterr().err.strip() == "error: admin actions are disabled: CRASHCHAT_ADMIN_TOKEN is not set"
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "t")
    assert cli(["hide", "--db", str(db.path), str(out.row.id)]) == 0
    assert db.rows() == []
    assert cli(["delete", "--db", str(db.path), "999"]) == 2
    assert "no leaderboard row #999" in capsys.readouterr().err


class LocalHub:
    """A local stand-in for the Hub: a real `HfApi` (so CommitScheduler's own scheduling code runs)
    whose network methods write to and read from a folder. Records every commit."""

    def __new__(cls, folder: Path, *, fail_downloads: Exception | None = None):
        from huggingface_hub import HfApi
        from huggingface_hub.errors import EntryNotFoundError

        class Api(HfApi):
            def create_repo(self, repo_id, **kwargs):
                self.created.append((repo_id, kwargs.get("repo_type"), kwargs.get("private")))
                return type("RepoUrl", (), {"repo_id": repo_id})()

            def create_commit(self, *, repo_id, operations, commit_message, repo_type=None, revision=None, **kw):
                for op in operations:
                    target = folder / op.path_in_repo
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(op.path_or_fileobj.read())
                self.commits.append((repo_id, repo_type, [op.path_in_repo for op in operations]))
                return f"commit {len(self.commits)}"

            def hf_hub_download(self, *, repo_id, filename, repo_type=None, local_dir=None, **kw):
                if fail_downloads is not None:
                    raise fail_downloads
                source = folder / filename
                if not source.exists():
                    raise EntryNotFoundError(f"{filename} not in {repo_id}")
                target = Path(local_dir) / filename
                target.write_bytes(source.read_bytes())
                return str(target)

        api = Api(token="local")
        api.commits, api.created = [], []
        folder.mkdir(parents=True, exist_ok=True)
        return api


def test_hub_sync_batches_commits_with_commit_scheduler(db, split, tmp_path):
    remote = tmp_path / "remote"
    api = LocalHub(remote)
    sync = HubSync(db, "me/results", "tok", every_minutes=60, api=api)
    assert "starting empty" in sync.pull() and sync.enabled
    assert "a commit at most every 60 min" in sync.start()
    try:
        assert api.created == [("me/results", "dataset", True)]
        assert sync.flush() is None and api.commits == []  # nothing written yet: no commit
        # A burst of ten submissions (each marks the database changed) makes one commit.
        for i in range(10):
            submit(db, [write_submission(tmp_path / f"b{i}.jsonl", split, seed=200 + i, share=0.003)], f"m{i}",
                   split=split, bootstrap=0)
            sync.push_soon()
        assert sync.flush() == "commit 1" and len(api.commits) == 1
        assert api.commits[0] == ("me/results", "dataset", ["leaderboard.sqlite3"])
        assert sorted(r.model for r in Store(remote / "leaderboard.sqlite3").rows()) == sorted(f"m{i}" for i in range(10))
        assert sync.flush() is None and len(api.commits) == 1  # no write since: no commit
        # A write that lands while a commit is being made is committed by the next round.
        original = api.create_commit

        def slow_commit(**kwargs):
            out = original(**kwargs)
            submit(db, [write_submission(tmp_path / "late.jsonl", split, seed=300, share=0.003)], "late",
                   split=split, bootstrap=0)
            sync.push_soon()
            return out

        api.create_commit = slow_commit
        submit(db, [write_submission(tmp_path / "x.jsonl", split, seed=301, share=0.003)], "x", split=split, bootstrap=0)
        sync.push_soon()
        assert sync.flush() == "commit 2"
        api.create_commit = original
        assert "late" not in [r.model for r in Store(remote / "leaderboard.sqlite3").rows()]
        assert sync.flush() == "commit 3"
        assert "late" in [r.model for r in Store(remote / "leaderboard.sqlite3").rows()]
        # A failed commit is retried at the next round, and the error is kept.
        api.create_commit = lambda **kw: (_ for _ in ()).throw(OSError("hub down"))
        db_rows = len(db.rows())
        sync.push_soon()
        with pytest.raises(OSError):
            sync.flush()
        assert "hub down" in sync.last_error
        api.create_commit = original
        assert sync.flush() == "commit 4" and sync.last_error is None
        assert len(Store(remote / "leaderboard.sqlite3").rows()) == db_rows
    finally:
        sync.stop()

    # A fresh Space restores the stored rows, and never overwrites local rows.
    fresh = Store(tmp_path / "fresh.sqlite3")
    again = HubSync(fresh, "me/results", "tok", api=LocalHub(remote))
    assert again.pull() == f"restored {db_rows} rows from me/results" and len(fresh.rows()) == db_rows
    assert again.pull().startswith("kept the local database")


def test_hub_sync_disabled_when_the_pull_fails(tmp_path):
    broken = HubSync(Store(tmp_path / "broken.sqlite3"), "me/results", "tok",
                     api=LocalHub(tmp_path / "r", fail_downloads=OSError("network unreachable")))
    assert "sync disabled" in broken.pull() and not broken.enabled
    assert "disabled" in broken.start() and broken.scheduler is None
    broken.push_soon()  # an empty database must never overwrite the stored one
    assert broken.flush() is None and broken.api.commits == []


def test_hub_sync_only_when_configured_env(db, monkeypatch):
    monkeypatch.setenv("CRASHCHAT_RESULTS_REPO", "someone/results")
    monkeypatch.setenv("HF_TOKEN", "x")
    monkeypatch.setenv("CRASHCHAT_SYNC_MINUTES", "0.5")
    sync = HubSync.from_env(db)
    assert sync.every_minutes == 0.5 and sync.scheduler is None  # nothing runs before start()


def test_known_answers_under_an_older_scorer_are_already_on_the_board(db, split, tmp_path):
    """Identity is the answers alone: the same answers scored by an older scorer (or on another
    split) point at that row, and re-scoring brings it up to date (no second row, no collision)."""
    path = write_submission(tmp_path / "a.jsonl", split, seed=21, share=0.005)
    first = submit(db, [path], "first", split=split, bootstrap=0)
    db.update_result(first.row.id, dict(first.result, scorer_version="0.0.1"))
    again = submit(db, [path], "again", split=split, bootstrap=0)
    assert not again.added and again.row.id == first.row.id and again.row.scorer_version == "0.0.1"
    assert rescore(db, split, bootstrap=0)[0].startswith(f"#{first.row.id} 'first': re-scored (scorer 0.0.1")
    assert db.get(first.row.id).scorer_version == SCORER_VERSION and len(db.rows()) == 1


def test_rescore_keeps_rows_whose_answers_no_longer_read(db, split, tmp_path):
    out = submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=22, share=0.005)], "m", split=split,
                 bootstrap=0)
    with sqlite3.connect(db.path) as con:
        con.execute("UPDATE answer_keys SET keys_zlib = ?", (zlib.compress(b'[["x.mp4", "flying"]]'),))
        con.execute("UPDATE payloads SET answers_bz2 = ?", (bz2.compress(b'["Yes"]'),))
        con.execute("UPDATE submissions SET scorer_version = '0.0.1'")
    db.clear_cache()
    (line,) = rescore(db, split, bootstrap=0)
    assert line.startswith(f"#{out.row.id} 'm': kept old scores: answers unreadable: row-{out.row.id}:1")


def test_rows_are_cached_until_any_process_writes(db, split, tmp_path, monkeypatch):
    submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=23, share=0.005)], "m", split=split, bootstrap=0)
    first = db.rows()
    loads = []
    real = json.loads
    monkeypatch.setattr(store_mod.json, "loads", lambda *a, **k: loads.append(1) or real(*a, **k))
    assert db.rows() is not first and db.rows()[0] is first[0]  # no JSON parsed again
    assert loads == []
    # Another process (another Store on the same file) adds a row: only the new row is parsed.
    other = Store(db.path)
    generation = db.generation()
    submit(other, [write_submission(tmp_path / "b.jsonl", split, seed=24, share=0.005)], "n", split=split, bootstrap=0)
    assert db.generation() > generation
    loads.clear()
    rows = db.rows()
    assert [r.model for r in rows] == ["m", "n"] and rows[0] is first[0]
    assert len(loads) == 1  # the new row's files list: no scores, nothing of the old row
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "t")
    other.set_hidden(rows[1].id, True, admin_token="t")
    assert [r.model for r in db.rows()] == ["m"]


def test_schema_1_is_migrated_without_losing_rows(tmp_path, split):
    """A database written by schema 1 (identity by file bytes) opens as schema 2 with every row."""
    path = tmp_path / "v1.sqlite3"
    sub = read_submission([write_submission(tmp_path / "a.jsonl", split, seed=25, share=0.005)], split)
    result = score(sub, split, bootstrap=0)
    plain = [{"video": r["video"], "task": r["task"], "response": r["response"]} for r in canonical_rows(sub.answers)]
    with sqlite3.connect(path) as con:
        con.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE submissions (
                id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, link TEXT NOT NULL DEFAULT '',
                notes TEXT NOT NULL DEFAULT '', submitted_at TEXT NOT NULL, files_sha256 TEXT NOT NULL,
                files_json TEXT NOT NULL, split_sha256 TEXT NOT NULL, scorer_version TEXT NOT NULL,
                result_json TEXT NOT NULL, answers_zlib BLOB NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
                rescored_at TEXT NOT NULL DEFAULT '', UNIQUE (files_sha256, split_sha256, scorer_version));
        """)
        for i, (model, answers) in enumerate([("first", plain), ("shuffled copy", plain[::-1]),
                                              ("other", plain[:3]), ("deleted", plain[:2])], start=1):
            con.execute("INSERT INTO submissions (model, submitted_at, files_sha256, files_json, split_sha256, "
                        "scorer_version, result_json, answers_zlib, hidden) VALUES (?,?,?,?,?,?,?,?,?)",
                        (model, "2026-01-01T00:00:00Z", str(i) * 64, json.dumps([[f"f{i}.jsonl", "ab" * 32]]),
                         split.sha256, SCORER_VERSION, json.dumps(result), zlib.compress(json.dumps(answers).encode()),
                         int(model == "other")))
        con.execute("DELETE FROM submissions WHERE model = 'deleted'")
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    rows = store.rows(include_hidden=True)
    assert [(r.id, r.model, r.hidden) for r in rows] == [(1, "first", False), (2, "shuffled copy", False),
                                                         (3, "other", True)]
    assert rows[0].answers_sha256 == scored_digest(sub.answers)
    assert rows[1].answers_sha256.endswith(":same-answers-as-#1")  # kept, marked
    assert store.result(1) == json.loads(json.dumps(result)) and rows[0].provenance is None
    assert score(stored_submission(store, 1, split), split, bootstrap=0)["protocols"] == result["protocols"]
    # The same answers now point at the first row, and ids are never reused.
    again = submit(store, [write_submission(tmp_path / "b.jsonl", split, seed=25, share=0.005)], "new", split=split,
                   bootstrap=0)
    assert not again.added and again.row.id == 1
    fresh = submit(store, [write_submission(tmp_path / "c.jsonl", split, seed=26, share=0.005)], "fresh",
                   split=split, bootstrap=0)
    assert fresh.added and fresh.row.id == 5


def _v2_database(path: Path, split, tmp_path) -> tuple[list[dict], dict]:
    """A schema-2 database as the previous release wrote it: four rows (one deleted), the second
    a case copy of the first (`yes` for `Yes`), the third hidden, the fourth with a provenance."""
    sub = read_submission([write_submission(tmp_path / "v2.jsonl", split, seed=27, share=0.005)], split)
    result = score(sub, split, bootstrap=0)
    plain = canonical_rows(sub.answers)
    case_copy = [dict(r, response=r["response"].lower() if r["response"] in ("Yes", "No") else r["response"])
                 for r in plain]
    assert case_copy != plain
    other = plain[:3]
    with sqlite3.connect(path) as con:
        con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                          "INSERT INTO meta VALUES ('schema_version', '2'), ('generation', '7');")
        con.execute(store_mod._SUBMISSIONS_V2)
        for i, (model, answers, hidden, meta) in enumerate([
                ("First", plain, 0, ""), ("case copy", case_copy, 0, ""), ("other", other, 1, ""),
                ("deleted", plain[:2], 0, ""), ("with provenance", plain[:4], 0, json.dumps({"format": "x"}))],
                start=1):
            con.execute("INSERT INTO submissions (model, link, notes, submitted_at, answers_sha256, files_sha256, "
                        "files_json, split_sha256, scorer_version, hidden, revision, provenance_json, result_json, "
                        "answers_zlib) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (model, "https://x.org", "n", "2026-01-01T00:00:00Z", f"{i:064d}", "ab" * 32,
                         json.dumps([[f"f{i}.jsonl", "cd" * 32]]), split.sha256, "1.0.0", hidden, 3, meta,
                         json.dumps(result), zlib.compress(json.dumps(answers).encode())))
        con.execute("DELETE FROM submissions WHERE model = 'deleted'")
    return [plain, case_copy, other, None, plain[:4]], result


def test_schema_2_is_migrated_without_losing_rows(tmp_path, split, split_dir):
    path = tmp_path / "v2.sqlite3"
    answers, result = _v2_database(path, split, tmp_path)
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION == 4
    rows = store.rows(include_hidden=True)
    assert [(r.id, r.model, r.hidden, r.submitter) for r in rows] == [
        (1, "First", False, ""), (2, "case copy", False, ""), (3, "other", True, ""), (5, "with provenance", False, "")]
    # Every row keeps its answers exactly, its scores, files, link, provenance and revision.
    for row, given in zip(rows, [a for a in answers if a is not None], strict=True):
        assert store.answers(row.id) == given
        assert store.result(row.id) == json.loads(json.dumps(result))
        assert row.files == [(f"f{row.id}.jsonl", "cd" * 32)] and row.link == "https://x.org" and row.revision == 3
    assert rows[3].provenance == {"format": "x"}
    # Identity is now what the scorer reads: the case copy reads as the first row, kept and marked.
    assert rows[0].answers_sha256 == scored_digest(read_submission(
        [write_submission(tmp_path / "again.jsonl", split, seed=27, share=0.005)], split).answers)
    assert rows[1].answers_sha256 == f"{rows[0].answers_sha256}:same-answers-as-#1"
    # Coverage and the overall score come from the stored scores; the interval waits for a re-score.
    assert rows[0].overall == pytest.approx(sum(
        result["protocols"]["strict"]["tasks"][t][m] for t, m in
        [("crash_recognition", "f1_macro"), ("crash_localization", "miou"), ("pre_crash_localization", "miou"),
         ("crash_description", "rouge_l_f"), ("causal_reasoning", "rouge_l_f"),
         ("prevention_reasoning", "rouge_l_f")]) / 6)
    assert store.summaries([1])[1]["overall"]["ci95"] is None and not rows[0].complete
    # New submissions: the same answers in another case point at row 1; the names stay the old rows'.
    again = submit(store, [write_submission(tmp_path / "again.jsonl", split, seed=27, share=0.005)], "x",
                   split=split, bootstrap=0)
    assert not again.added and again.row.id == 1
    with pytest.raises(NameRefused, match="looks like, 'First' .*before sign-in"):
        submit(store, [write_submission(tmp_path / "new.jsonl", split, seed=28, share=0.005)], "first ",
               split=split, bootstrap=0)
    # The old scorer version makes them stale: re-scoring adds the overall interval, keeps every row.
    assert len(rescore(store, split, bootstrap=20)) == 4
    assert all(store.result(r.id)["overall"]["ci95"] for r in store.rows(include_hidden=True))
    fresh = submit(store, [write_submission(tmp_path / "fresh.jsonl", split, seed=29, share=0.005)], "fresh",
                   split=split, bootstrap=0)
    assert fresh.added and fresh.row.id == 6  # ids are never reused
    assert cli(["list", "--db", str(path)]) == 0


def test_a_full_disk_stores_nothing_and_says_so(db, split, tmp_path, monkeypatch):
    """SQLite's own "database or disk is full" (a page limit just above the file's size) during a
    submission: one line, and the transaction rolled back, nothing half stored."""
    submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=30, share=0.005)], "a", split=split, bootstrap=0)
    generation, pages = db.generation(), None
    real = Store._connect

    @contextlib.contextmanager
    def tight(self):
        with real(self) as con:
            nonlocal pages
            pages = pages or con.execute("PRAGMA page_count").fetchone()[0]
            con.execute(f"PRAGMA max_page_count = {pages + 2}")
            yield con

    monkeypatch.setattr(Store, "_connect", tight)
    big = write_submission(tmp_path / "b.jsonl", split, seed=31, share=1.0)
    with pytest.raises(StoreError) as full:
        submit(db, [big], "b", split=split, bootstrap=0)
    assert str(full.value) == "the leaderboard's disk is full; nothing was stored"
    monkeypatch.setattr(Store, "_connect", real)
    assert [r.model for r in db.rows()] == ["a"] and db.generation() == generation
    with sqlite3.connect(db.path) as con:  # the shared key list inserted first was rolled back too
        assert con.execute("SELECT COUNT(*) FROM answer_keys").fetchone()[0] == 1
    # An OSError for a full disk (ENOSPC) reads the same.
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "pack_json", no_space)
    with pytest.raises(StoreError, match="disk is full"):
        db.update_result(db.rows()[0].id, db.result(db.rows()[0].id))


def test_a_failed_write_is_rolled_back(db, split, tmp_path):
    """The mutant of issue 21: a write that fails half way must not commit what it did before."""
    out = submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=32, share=0.005)], "a", split=split,
                 bootstrap=0)
    generation = db.generation()
    with pytest.raises(RuntimeError), db._write() as con:
        con.execute("UPDATE submissions SET model = 'changed' WHERE id = ?", (out.row.id,))
        raise RuntimeError("fails after the first statement")
    assert db.get(out.row.id).model == "a" and db.generation() == generation
    # The same through `add`: the name check refuses after the key list and split were inserted.
    sub = read_submission([write_submission(tmp_path / "b.jsonl", split, seed=33, share=1.0)], split)

    def refuse(holders):
        raise SubmitError("refused")

    with pytest.raises(SubmitError):
        db.add(model="b", answers_sha256=scored_digest(sub.answers), files_sha256="0" * 64, files=[],
               result=score(sub, split, bootstrap=0), answers=pack_answers(canonical_rows(sub.answers)),
               check_name=refuse)
    assert len(db.rows()) == 1 and db.generation() == generation


def test_a_write_reads_no_other_row(db, split, tmp_path, monkeypatch):
    """Deduplication is one indexed lookup and `add` builds its own row: neither reads every row."""
    submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=34, share=0.005)], "a", split=split, bootstrap=0)
    monkeypatch.setattr(Store, "_all_rows", lambda self: pytest.fail("a submission read every row"))
    path = write_submission(tmp_path / "b.jsonl", split, seed=35, share=0.005)
    assert submit(db, [path], "b", split=split, bootstrap=0).added
    assert not submit(db, [path], "c", split=split, bootstrap=0).added
    with sqlite3.connect(db.path) as con:
        plan = " ".join(str(r) for r in con.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE answers_sha256 = 'x'"))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan


def test_only_the_evaluation_path_makes_an_evaluated_row(db, split, tmp_path):
    """`evaluation` (passed by the worker path only) makes the row `evaluated` under the Hub id,
    which a paper row's name or another submitter's name does not block; file submissions stay
    `verified`, whatever their provenance says."""
    from leaderboard.identity import Submitter

    mine = submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=21)], "Qwen/Qwen2-VL-7B-Instruct",
                  split=split, submitter=Submitter("alice", "local"), bootstrap=20)
    block = {"request_id": 7, "worker": "gpu-1", "gpu": "NVIDIA H200", "gpus": 1, "code_version": "crashchat 0.1"}
    made = submit(db, [write_submission(tmp_path / "b.jsonl", split, seed=22)], "Qwen/Qwen2-VL-7B-Instruct",
                  split=split, submitter=Submitter("bob", "evaluation"), bootstrap=20, evaluation=block, reserved=[])
    assert mine.row.kind == "verified" and mine.row.evaluation is None
    assert made.added and made.row.kind == "evaluated" and made.row.evaluation == block
    assert {r.id: r.kind for r in Store(db.path).rows()} == {mine.row.id: "verified", made.row.id: "evaluated"}
    assert Store(db.path).get(made.row.id).as_dict()["kind"] == "evaluated"
    with pytest.raises(NameRefused):  # a self-reported row still cannot take bob's name from him
        submit(db, [write_submission(tmp_path / "c.jsonl", split, seed=23)], "Qwen/Qwen2-VL-7B-Instruct",
               split=split, submitter=Submitter("carol", "local"), bootstrap=20)


def test_schema_3_gains_the_evaluation_column_and_keeps_its_rows(tmp_path, split):
    path = tmp_path / "v3.sqlite3"
    old = Store(path)
    row = submit(old, [write_submission(tmp_path / "a.jsonl", split, seed=24)], "m", split=split, bootstrap=20).row
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.execute("ALTER TABLE submissions DROP COLUMN evaluation_json")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION == 4
    [again] = store.rows()
    assert again.id == row.id and again.kind == "verified" and again.answers_sha256 == row.answers_sha256
    assert store.result(row.id)["protocols"] == old.result(row.id)["protocols"]
