"""The leaderboard store, without Gradio: SQLite persistence, dedupe, concurrency, re-scoring, admin."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from leaderboard import SCORER_VERSION, store as store_mod
from leaderboard.scoring import score
from leaderboard.store import (SCHEMA_VERSION, HubSync, Store, StoreError, SubmitError, check_entry, files_digest,
                               rescore, stored_submission, submit)
from leaderboard.submission import SubmissionError, read_submission

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


def test_entry_rules():
    check_entry(XSS)  # any printable text is a valid name; it is rendered as text, never HTML
    check_entry("x" * 80, "https://example.org/model", "line one\nline two")
    for bad, field in [("", "model name"), ("   ", "model name"), ("x" * 81, "model name"),
                       ("tab\there", "model name"), ("new\nline", "model name")]:
        with pytest.raises(SubmitError, match=field):
            check_entry(bad)
    with pytest.raises(SubmitError, match="link"):
        check_entry("m", "javascript:alert(1)")
    with pytest.raises(SubmitError, match="notes"):
        check_entry("m", "", "x" * 5000)


def test_files_digest_ignores_order_and_enforces_limits(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("1")
    b.write_text("2")
    assert files_digest([a, b])[0] == files_digest([b, a])[0] != files_digest([a])[0]
    with pytest.raises(SubmitError, match=r"a.jsonl: file is 1 bytes, over the 0-byte limit"):
        files_digest([a], max_bytes=0)
    with pytest.raises(SubmitError, match="no prediction file"):
        files_digest([])
    with pytest.raises(SubmitError, match="at most"):
        files_digest([a] * 13)


def test_submit_scores_stores_and_dedupes(db, split, tmp_path):
    path = write_submission(tmp_path / "sub.jsonl", split, seed=1)
    out = submit(db, [path], XSS, split=split, link="https://example.org", notes="n", bootstrap=50)
    assert out.added and out.row.model == XSS and out.row.link == "https://example.org"
    expected = score(read_submission([path], split), split, bootstrap=50)
    assert out.result["protocols"] == json.loads(json.dumps(expected["protocols"]))
    assert out.result["leaderboard"]["row_id"] == out.row.id
    assert out.row.split_sha256 == split.sha256 and out.row.scorer_version == SCORER_VERSION
    # The same file (under another name, another model name) points at the existing row.
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes(path.read_bytes())
    again = submit(db, [copy], "someone else", split=split, bootstrap=50)
    assert not again.added and again.row.id == out.row.id and again.row.model == XSS
    assert len(db.rows()) == 1
    # The stored answers give back the same submission.
    rebuilt = stored_submission(db, out.row.id, split)
    assert score(rebuilt, split, bootstrap=50)["protocols"] == expected["protocols"]


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
    result = score(read_submission([path], split), split, bootstrap=0)
    digest, files = files_digest([path])
    added = []

    def one():
        added.append(Store(db.path).add(model="m", files_sha256=digest, files=files, result=result, answers=[])[1])

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
    stale = dict(old.row.result, scorer_version="0.0.1")
    stale["protocols"] = json.loads(json.dumps(stale["protocols"]))
    stale["protocols"]["strict"]["tasks"]["crash_recognition"]["f1_macro"] = 0.123
    db.update_result(old.row.id, stale)
    assert db.get(old.row.id).scorer_version == "0.0.1"
    lines = rescore(db, split, bootstrap=0)
    assert len(lines) == 1 and lines[0].startswith(f"#{old.row.id} 'old': re-scored (scorer 0.0.1 -> ")
    fixed = db.get(old.row.id)
    assert fixed.scorer_version == SCORER_VERSION and fixed.rescored_at
    assert fixed.result["protocols"] == old.row.result["protocols"]
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
    # A hidden row still dedupes: the same file points at it rather than making a new row.
    again = submit(db, [tmp_path / "a.jsonl"], "m2", split=split, bootstrap=0)
    assert not again.added and again.row.hidden
    db.delete(out.row.id, admin_token="s3cret")
    assert db.rows(include_hidden=True) == []
    with pytest.raises(KeyError):
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
    assert store_mod.main(["--db", str(db.path), "list"]) == 0
    assert repr(XSS) in capsys.readouterr().out
    assert store_mod.main(["--db", str(db.path), "rescore", "--split-dir", str(split_dir), "--bootstrap", "0"]) == 0
    assert "every row is current" in capsys.readouterr().out
    monkeypatch.delenv("CRASHCHAT_ADMIN_TOKEN", raising=False)
    assert store_mod.main(["--db", str(db.path), "hide", str(out.row.id)]) == 2
    assert capsys.readouterr().err.strip() == "error: admin actions are disabled: CRASHCHAT_ADMIN_TOKEN is not set"
    monkeypatch.setenv("CRASHCHAT_ADMIN_TOKEN", "t")
    assert store_mod.main(["--db", str(db.path), "hide", str(out.row.id)]) == 0
    assert db.rows() == []
    assert store_mod.main(["--db", str(db.path), "delete", "999"]) == 2
    assert "no leaderboard row #999" in capsys.readouterr().err


def test_hub_sync_pull_and_push_logic(db, split, tmp_path, monkeypatch):
    """The Hub calls are replaced by local file copies; what is tested is what we do around them."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    submit(db, [write_submission(tmp_path / "a.jsonl", split, seed=13, share=0.005)], "m", split=split, bootstrap=0)
    uploaded = {}

    class LocalApi:  # records what would be uploaded
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            uploaded["repo"] = (repo_id, kwargs["repo_type"], kwargs["private"])

        def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, repo_type, commit_message):
            uploaded["copy"] = (tmp_path / "remote.sqlite3")
            uploaded["copy"].write_bytes(Path(path_or_fileobj).read_bytes())

    monkeypatch.setattr(huggingface_hub, "HfApi", LocalApi)
    HubSync(db, "me/results", "tok").push()
    assert uploaded["repo"] == ("me/results", "dataset", True)
    assert [r.model for r in Store(uploaded["copy"]).rows()] == ["m"]

    fresh = Store(tmp_path / "fresh.sqlite3")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(uploaded["copy"]))
    sync = HubSync(fresh, "me/results", "tok")
    assert sync.pull() == "restored 1 rows from me/results" and [r.model for r in fresh.rows()] == ["m"]
    assert sync.pull().startswith("kept the local database")  # never overwrites local rows

    def missing(*a, **k):
        raise EntryNotFoundError("no file")

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    empty = HubSync(Store(tmp_path / "empty.sqlite3"), "me/results", "tok")
    assert "starting empty" in empty.pull() and empty.enabled
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    broken = HubSync(Store(tmp_path / "broken.sqlite3"), "me/results", "tok")
    assert "sync disabled" in broken.pull() and not broken.enabled
    broken.push_soon()  # an empty database must never overwrite the stored one
    assert broken._worker is None
