"""The leaderboard's store: verified submissions in SQLite, with their answers and scores.

`python -m leaderboard.store {list,rescore,hide,unhide,delete} [--db PATH] ...`

One SQLite file (stdlib `sqlite3`, WAL so readers never block the single writer) at
`CRASHCHAT_DB`, else `<user data dir>/crashchat/leaderboard.sqlite3`. Each row keeps the
submitted answers (our JSONL layout, zlib-compressed) next to the scorer's JSON, so every row can
be re-scored when the scorer or the split changes. Every operation opens its own connection, so
threads (Gradio workers) never share one.

On a Hugging Face Space the file is mirrored to a dataset repository (`CRASHCHAT_RESULTS_REPO`,
token in `HF_TOKEN`) so that results survive restarts: see `HubSync`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from leaderboard import SCORER_VERSION
from leaderboard.scoring import score
from leaderboard.split import Split, SplitError, load_split
from leaderboard.submission import MAX_BYTES, Submission, SubmissionError, read_submission, rows_from_answers

SCHEMA_VERSION = 1
DB_NAME = "leaderboard.sqlite3"
MAX_FILES = 12
MAX_NAME = 80
MAX_LINK = 500
MAX_NOTES = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    link TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    submitted_at TEXT NOT NULL,
    files_sha256 TEXT NOT NULL,
    files_json TEXT NOT NULL,
    split_sha256 TEXT NOT NULL,
    scorer_version TEXT NOT NULL,
    result_json TEXT NOT NULL,
    answers_zlib BLOB NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    rescored_at TEXT NOT NULL DEFAULT '',
    -- The same files on the same split and scorer version are one row (issue 3, item 6).
    UNIQUE (files_sha256, split_sha256, scorer_version)
);
"""


class StoreError(Exception):
    """The database cannot be used (e.g. written by a newer schema); the message says why."""


class SubmitError(ValueError):
    """A submission's form is unusable (name, link, notes, files); one line naming the field."""


def user_data_dir() -> Path:
    """The per-user data folder (XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "crashchat"


def default_db_path() -> Path:
    """`CRASHCHAT_DB`, else the user data folder."""
    env = os.environ.get("CRASHCHAT_DB")
    return Path(env).expanduser() if env else user_data_dir() / DB_NAME


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StoredRow:
    """One verified submission as stored (the answers are loaded separately: they are large)."""

    id: int
    model: str
    link: str
    notes: str
    submitted_at: str
    files_sha256: str
    files: list[tuple[str, str]]
    split_sha256: str
    scorer_version: str
    result: dict
    hidden: bool
    rescored_at: str

    def as_dict(self) -> dict:
        return asdict(self)


_COLUMNS = ("id, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, "
            "scorer_version, result_json, hidden, rescored_at")


def _row(rec: tuple) -> StoredRow:
    (id_, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, scorer_version,
     result_json, hidden, rescored_at) = rec
    return StoredRow(id_, model, link, notes, submitted_at, files_sha256,
                     [tuple(f) for f in json.loads(files_json)], split_sha256, scorer_version,
                     json.loads(result_json), bool(hidden), rescored_at)


def pack_answers(rows: list[dict]) -> bytes:
    return zlib.compress(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 6)


def unpack_answers(blob: bytes) -> list[dict]:
    return json.loads(zlib.decompress(blob).decode("utf-8"))


class Store:
    """The SQLite file of verified rows. Cheap to create; safe to use from many threads."""

    def __init__(self, path: Path | str | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise StoreError(f"{self.path}: schema version {found[0]} is newer than this code's "
                                 f"{SCHEMA_VERSION}; upgrade CrashChat or point CRASHCHAT_DB elsewhere")
            con.execute("COMMIT")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes), so two
        # writers queue on the database lock instead of failing on a read->write upgrade.
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            yield con
        finally:
            con.close()

    def schema_version(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    # --- reading --------------------------------------------------------------------------------

    def rows(self, *, include_hidden: bool = False) -> list[StoredRow]:
        where = "" if include_hidden else "WHERE hidden = 0"
        with self._connect() as con:
            return [_row(r) for r in con.execute(f"SELECT {_COLUMNS} FROM submissions {where} ORDER BY id")]

    def get(self, row_id: int) -> StoredRow | None:
        with self._connect() as con:
            rec = con.execute(f"SELECT {_COLUMNS} FROM submissions WHERE id = ?", (int(row_id),)).fetchone()
        return None if rec is None else _row(rec)

    def find(self, files_sha256: str, split_sha256: str, scorer_version: str) -> StoredRow | None:
        with self._connect() as con:
            rec = con.execute(
                f"SELECT {_COLUMNS} FROM submissions WHERE files_sha256 = ? AND split_sha256 = ? "
                "AND scorer_version = ?", (files_sha256, split_sha256, scorer_version)).fetchone()
        return None if rec is None else _row(rec)

    def answers(self, row_id: int) -> list[dict]:
        """The stored answers in our layout: `[{"video", "task", "response"}]`."""
        with self._connect() as con:
            rec = con.execute("SELECT answers_zlib FROM submissions WHERE id = ?", (int(row_id),)).fetchone()
        if rec is None:
            raise KeyError(f"no leaderboard row #{row_id}")
        return unpack_answers(rec[0])

    # --- writing --------------------------------------------------------------------------------

    def add(self, *, model: str, files_sha256: str, files: Sequence[tuple[str, str]], result: dict,
            answers: list[dict], link: str = "", notes: str = "") -> tuple[StoredRow, bool]:
        """Insert a scored submission; (row, True), or (the existing row, False) for known files."""
        split_sha256 = result["split"]["sha256"]
        version = str(result["scorer_version"])
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(
                "INSERT INTO submissions (model, link, notes, submitted_at, files_sha256, files_json, "
                "split_sha256, scorer_version, result_json, answers_zlib) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (files_sha256, split_sha256, scorer_version) DO NOTHING",
                (model, link, notes, now_utc(), files_sha256, json.dumps([list(f) for f in files]),
                 split_sha256, version, json.dumps(result), pack_answers(answers)))
            added = cur.rowcount == 1
            con.execute("COMMIT")
        row = self.find(files_sha256, split_sha256, version)
        assert row is not None, "a row just inserted or found by its unique key must exist"
        return row, added

    def update_result(self, row_id: int, result: dict) -> None:
        """Replace a row's scores after re-scoring (its split and scorer version follow the result)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("UPDATE submissions SET result_json = ?, split_sha256 = ?, scorer_version = ?, "
                        "rescored_at = ? WHERE id = ?",
                        (json.dumps(result), result["split"]["sha256"], str(result["scorer_version"]),
                         now_utc(), int(row_id)))
            con.execute("COMMIT")

    def set_hidden(self, row_id: int, hidden: bool, *, admin_token: str | None) -> None:
        check_admin(admin_token)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            changed = con.execute("UPDATE submissions SET hidden = ? WHERE id = ?",
                                  (int(bool(hidden)), int(row_id))).rowcount
            con.execute("COMMIT")
        if not changed:
            raise KeyError(f"no leaderboard row #{row_id}")

    def delete(self, row_id: int, *, admin_token: str | None) -> None:
        check_admin(admin_token)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            changed = con.execute("DELETE FROM submissions WHERE id = ?", (int(row_id),)).rowcount
            con.execute("COMMIT")
        if not changed:
            raise KeyError(f"no leaderboard row #{row_id}")

    def snapshot(self, dest: Path | str) -> Path:
        """A consistent single-file copy (SQLite backup API: includes what is still in the WAL)."""
        dest = Path(dest)
        with self._connect() as con, contextlib.closing(sqlite3.connect(dest)) as out:
            con.backup(out)
        return dest


def check_admin(token: str | None) -> None:
    """Admin actions need `CRASHCHAT_ADMIN_TOKEN` set and the same token given."""
    expected = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
    if not expected:
        raise PermissionError("admin actions are disabled: CRASHCHAT_ADMIN_TOKEN is not set")
    if not token or not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        raise PermissionError("wrong admin token")


# --- the submission pipeline --------------------------------------------------------------------


def check_entry(model: str, link: str = "", notes: str = "") -> None:
    """Validate the form: model name 1-80 printable characters; optional http(s) link; notes."""
    if not isinstance(model, str) or not model.strip():
        raise SubmitError("model name: required (1-80 printable characters)")
    if len(model) > MAX_NAME:
        raise SubmitError(f"model name: {len(model)} characters, at most {MAX_NAME}")
    if not model.isprintable():
        raise SubmitError("model name: only printable characters (no tabs, newlines or control codes)")
    link = link or ""
    if link:
        if len(link) > MAX_LINK or not link.isprintable() or " " in link:
            raise SubmitError(f"link: one URL without spaces, at most {MAX_LINK} characters")
        if not link.lower().startswith(("https://", "http://")):
            raise SubmitError("link: must start with https:// or http://")
    notes = notes or ""
    if len(notes) > MAX_NOTES:
        raise SubmitError(f"notes: {len(notes)} characters, at most {MAX_NOTES}")
    if any(not (c.isprintable() or c in "\n\t") for c in notes):
        raise SubmitError("notes: only printable characters")


def files_digest(paths: Sequence[str | os.PathLike], *, max_bytes: int = MAX_BYTES,
                 max_files: int = MAX_FILES) -> tuple[str, list[tuple[str, str]]]:
    """(digest of the set of files, [(name, sha256)]): the same files in any order give one digest."""
    if not paths:
        raise SubmitError("files: no prediction file given")
    if len(paths) > max_files:
        raise SubmitError(f"files: {len(paths)} files, at most {max_files}")
    files = []
    for p in paths:
        path = Path(p)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise SubmitError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
        if size > max_bytes:
            raise SubmitError(f"{path.name}: file is {size} bytes, over the {max_bytes}-byte limit")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        files.append((path.name, h.hexdigest()))
    combined = hashlib.sha256("\n".join(sorted(d for _, d in files)).encode()).hexdigest()
    return combined, files


@dataclass(frozen=True)
class Outcome:
    row: StoredRow
    added: bool
    """False when the same files were already scored on this split and scorer version."""
    result: dict
    """The scorer's JSON, plus a `leaderboard` block naming the row."""


def _with_row(result: dict, row: StoredRow, added: bool) -> dict:
    out = dict(result)
    out["leaderboard"] = {"row_id": row.id, "model": row.model, "added": added,
                          "files_sha256": row.files_sha256, "submitted_at": row.submitted_at,
                          "hidden": row.hidden}
    return out


def validate(paths: Sequence[str | os.PathLike], split: Split, *, max_bytes: int = MAX_BYTES) -> Submission:
    """Read the files against the split (raises `SubmissionError` with file:line: field)."""
    files_digest(paths, max_bytes=max_bytes)  # size and count limits before reading anything
    return read_submission(list(paths), split, max_bytes=max_bytes)


def submit(store: Store, paths: Sequence[str | os.PathLike], model: str, *, split: Split,
           link: str = "", notes: str = "", bootstrap: int = 1000, seed: int = 0,
           max_bytes: int = MAX_BYTES) -> Outcome:
    """Validate, score and store one submission; known files point at their existing row."""
    check_entry(model, link, notes)
    digest, files = files_digest(paths, max_bytes=max_bytes)
    existing = store.find(digest, split.sha256, SCORER_VERSION)
    if existing is not None:  # skip the scoring work: same files, same split, same scorer
        return Outcome(existing, False, _with_row(existing.result, existing, False))
    submission = read_submission(list(paths), split, max_bytes=max_bytes)
    result = score(submission, split, bootstrap=bootstrap, seed=seed)
    row, added = store.add(model=model, link=link or "", notes=notes or "", files_sha256=digest,
                           files=files, result=result, answers=rows_from_answers(submission.answers))
    return Outcome(row, added, _with_row(row.result, row, added))


def stored_submission(store: Store, row_id: int, split: Split) -> Submission:
    """Rebuild a row's submission from its stored answers (for re-scoring, compare, failures)."""
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in store.answers(row_id))
    return read_submission([(f"row-{row_id}.jsonl", lines.encode("utf-8"))], split)


def rescore(store: Store, split: Split, *, force: bool = False, bootstrap: int = 1000,
            seed: int = 0) -> list[str]:
    """Re-score rows scored by another scorer version or split (all rows with `force`).

    Returns one line per row touched. A row whose answers no longer read (a stricter reader) or
    whose new key collides with a newer row keeps its old scores, and the line says why.
    """
    report = []
    for row in store.rows(include_hidden=True):
        if not force and row.scorer_version == SCORER_VERSION and row.split_sha256 == split.sha256:
            continue
        try:
            result = score(stored_submission(store, row.id, split), split, bootstrap=bootstrap, seed=seed)
            store.update_result(row.id, result)
        except SubmissionError as exc:
            report.append(f"#{row.id} {row.model!r}: kept old scores: answers unreadable: {exc}")
            continue
        except sqlite3.IntegrityError:
            report.append(f"#{row.id} {row.model!r}: kept old scores: the same files were already "
                          f"scored again under scorer {SCORER_VERSION}")
            continue
        report.append(f"#{row.id} {row.model!r}: re-scored (scorer {row.scorer_version} -> "
                      f"{SCORER_VERSION}, split {row.split_sha256[:12]} -> {split.sha256[:12]})")
    return report


# --- Hugging Face dataset sync -----------------------------------------------------------------


class HubSync:
    """Mirror the database file to a HF dataset repository, so a Space keeps results on restart.

    `pull()` once at start (only when there is no local file yet); `push_soon()` after each
    write: one background thread uploads a consistent snapshot, coalescing bursts of writes.
    If the pull fails for any reason other than "nothing stored yet", pushing is disabled for
    this run: an empty local database must never overwrite the stored results.
    """

    def __init__(self, store: Store, repo_id: str, token: str, filename: str = DB_NAME) -> None:
        self.store, self.repo_id, self.token, self.filename = store, repo_id, token, filename
        self.enabled = True
        self._dirty = threading.Event()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.last_error: str | None = None

    @classmethod
    def from_env(cls, store: Store) -> HubSync | None:
        repo = os.environ.get("CRASHCHAT_RESULTS_REPO")
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        return cls(store, repo, token) if repo and token else None

    def pull(self) -> str:
        """Fetch the stored database if the local one is empty; returns what happened."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        if self.store.rows(include_hidden=True):
            return f"kept the local database {self.store.path} (it has rows)"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                got = Path(hf_hub_download(self.repo_id, self.filename, repo_type="dataset",
                                           token=self.token, local_dir=tmp))
                self._restore(got)
        except (EntryNotFoundError, RepositoryNotFoundError):
            return f"no stored database in {self.repo_id} yet; starting empty"
        except Exception as exc:  # noqa: BLE001 - any failure disables pushing, said to the caller
            self.enabled = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            return f"could not fetch results from {self.repo_id} ({self.last_error}); sync disabled"
        return f"restored {len(self.store.rows(include_hidden=True))} rows from {self.repo_id}"

    def _restore(self, source: Path) -> None:
        with contextlib.closing(sqlite3.connect(source)) as src, self.store._connect() as dst:
            src.backup(dst)
        Store(self.store.path)  # re-check the schema version of what came in

    def push(self) -> None:
        from huggingface_hub import HfApi

        api = HfApi(token=self.token)
        with tempfile.TemporaryDirectory() as tmp:
            snap = self.store.snapshot(Path(tmp) / self.filename)
            api.create_repo(self.repo_id, repo_type="dataset", private=True, exist_ok=True)
            api.upload_file(path_or_fileobj=str(snap), path_in_repo=self.filename, repo_id=self.repo_id,
                            repo_type="dataset", commit_message=f"leaderboard results {now_utc()}")

    def push_soon(self) -> None:
        if not self.enabled:
            return
        self._dirty.set()
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="crashchat-hub-sync", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while self._dirty.is_set():
            self._dirty.clear()
            try:
                self.push()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - kept and shown; the next write retries
                self.last_error = f"{type(exc).__name__}: {exc}"
                print(f"warning: results sync to {self.repo_id} failed: {self.last_error}", file=sys.stderr)


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboard.store",
                                     description="Inspect and maintain the leaderboard database.")
    parser.add_argument("--db", default=None, help="database file (default: CRASHCHAT_DB or the user data dir)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list verified rows (hidden ones marked)")
    p = sub.add_parser("rescore", help="re-score rows from another scorer version or split")
    p.add_argument("--split-dir", default=None)
    p.add_argument("--force", action="store_true", help="re-score every row")
    p.add_argument("--bootstrap", type=int, default=1000)
    for name in ("hide", "unhide", "delete"):
        p = sub.add_parser(name, help=f"{name} a row (needs CRASHCHAT_ADMIN_TOKEN in the environment)")
        p.add_argument("row_id", type=int)
    args = parser.parse_args(argv)
    try:
        store = Store(args.db)
        if args.command == "list":
            for row in store.rows(include_hidden=True):
                flag = " (hidden)" if row.hidden else ""
                print(f"#{row.id}\t{row.model!r}{flag}\tscorer {row.scorer_version}\tsplit "
                      f"{row.split_sha256[:12]}\t{row.submitted_at}\tfiles {row.files_sha256[:16]}")
        elif args.command == "rescore":
            split = load_split(args.split_dir)
            lines = rescore(store, split, force=args.force, bootstrap=args.bootstrap)
            print("\n".join(lines) if lines else "every row is current")
        else:
            token = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
            if args.command == "delete":
                store.delete(args.row_id, admin_token=token)
            else:
                store.set_hidden(args.row_id, args.command == "hide", admin_token=token)
            print(f"#{args.row_id}: {args.command} done")
    except (StoreError, SplitError, PermissionError, KeyError, sqlite3.DatabaseError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
