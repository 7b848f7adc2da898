"""The leaderboard's database: verified submissions in SQLite, with their answers and scores.

One SQLite file (stdlib `sqlite3`, WAL so readers never block the single writer) at
`CRASHCHAT_DB`, else `<user data dir>/crashchat/leaderboard.sqlite3`. Each row keeps the
submitted answers (canonical rows, see `submission.canonical_rows`, zlib-compressed) next to the
scorer's JSON, so every row can be re-scored when the scorer or the split changes. Every
operation opens its own connection, so threads (Gradio workers) never share one.

Schema, migrations, reading and writing rows live here; what may be stored (form checks,
scoring, re-scoring) is `leaderboard.intake`, the Hub mirror `leaderboard.hubsync`, the
maintenance commands `python -m leaderboard {list,rescore,hide,unhide,delete}`.

Reading is cached: every write bumps a `generation` counter in the database (so a write by
another process is seen too), and `rows()` parses a row's JSON only when it is new or changed.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sqlite3
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from leaderboard.submission import answers_digest

SCHEMA_VERSION = 2
DB_NAME = "leaderboard.sqlite3"


# Columns in this order: SQLite reads a row's leading columns without touching the large ones.
_SUBMISSIONS = """
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    link TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    submitted_at TEXT NOT NULL,
    answers_sha256 TEXT NOT NULL,
    files_sha256 TEXT NOT NULL,
    files_json TEXT NOT NULL,
    split_sha256 TEXT NOT NULL,
    scorer_version TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    rescored_at TEXT NOT NULL DEFAULT '',
    revision INTEGER NOT NULL DEFAULT 0,
    provenance_json TEXT NOT NULL DEFAULT '',
    result_json TEXT NOT NULL,
    answers_zlib BLOB NOT NULL,
    -- The same answers on the same split and scorer version are one row.
    UNIQUE (answers_sha256, split_sha256, scorer_version)
)"""


class StoreError(Exception):
    """The database cannot be used (e.g. written by a newer schema); the message says why."""


class RowNotFound(LookupError):
    """No row with that id (never existed, or deleted); the message names it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such leaderboard row"



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
    answers_sha256: str
    """Digest of the canonical answers: the row's identity (with split and scorer version)."""
    files_sha256: str
    """Digest of the submitted files' digests (what was uploaded, for the record)."""
    files: list[tuple[str, str]]
    split_sha256: str
    scorer_version: str
    hidden: bool
    rescored_at: str
    revision: int
    """Bumped whenever the row's scores change (re-scoring); caches key on it."""
    provenance: dict | None
    """The validated `.meta.json` sent with the predictions (`crashchat.provenance`), if any."""
    result: dict

    def as_dict(self) -> dict:
        """A shallow dict of the fields (the result is shared, not copied: treat it as read-only)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_LIGHT = ("id, model, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256, "
          "scorer_version, hidden, rescored_at, revision, provenance_json")


def _row(rec: tuple, result: dict) -> StoredRow:
    (id_, model, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256,
     scorer_version, hidden, rescored_at, revision, provenance_json) = rec
    return StoredRow(id_, model, link, notes, submitted_at, answers_sha256, files_sha256,
                     [tuple(f) for f in json.loads(files_json)], split_sha256, scorer_version, bool(hidden),
                     rescored_at, revision, json.loads(provenance_json) if provenance_json else None, result)


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
        self._lock = threading.Lock()
        self._cache: tuple[int, list[tuple[tuple, StoredRow]]] | None = None
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
            if version > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise StoreError(f"{self.path}: schema version {version} is newer than this code's "
                                 f"{SCHEMA_VERSION}; upgrade CrashChat or point CRASHCHAT_DB elsewhere")
            if version == 0:
                con.execute(_SUBMISSIONS)
            elif version == 1:
                _migrate_v1(con)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
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

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that also bumps the generation, so every reader's cache expires."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def schema_version(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    def generation(self) -> int:
        """A counter bumped by every write (from any process): equal values mean nothing changed."""
        with self._connect() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    # --- reading --------------------------------------------------------------------------------

    def rows(self, *, include_hidden: bool = False) -> list[StoredRow]:
        """Every row (visible ones unless `include_hidden`), by id; parsed once per change."""
        every = self._all_rows()
        return every if include_hidden else [r for r in every if not r.hidden]

    def clear_cache(self) -> None:
        """Forget parsed rows (the next `rows()` reads and parses everything again)."""
        with self._lock:
            self._cache = None

    def _all_rows(self) -> list[StoredRow]:
        with self._lock:
            cached = self._cache
        with self._connect() as con:
            con.execute("BEGIN")  # one snapshot for the generation and the rows
            generation = int(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
            if cached is not None and cached[0] == generation:
                con.execute("COMMIT")
                return [row for _, row in cached[1]]
            known = {row.id: (rec, row) for rec, row in cached[1]} if cached is not None else {}
            light = con.execute(f"SELECT {_LIGHT} FROM submissions ORDER BY id").fetchall()
            # Only new or re-scored rows have their (large) result JSON read and parsed again.
            stale = [rec[0] for rec in light if rec[0] not in known or known[rec[0]][1].revision != rec[12]]
            results = {}
            for i in range(0, len(stale), 500):
                chunk = stale[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for id_, text in con.execute(f"SELECT id, result_json FROM submissions WHERE id IN ({marks})", chunk):
                    results[id_] = json.loads(text)
            con.execute("COMMIT")
        pairs = []
        for rec in light:
            old = known.get(rec[0])
            if old is not None and old[0] == rec:
                pairs.append((rec, old[1]))  # unchanged: the same object
            else:
                pairs.append((rec, _row(rec, results[rec[0]] if rec[0] in results else old[1].result)))
        with self._lock:
            self._cache = (generation, pairs)
        return [row for _, row in pairs]

    def get(self, row_id: int) -> StoredRow | None:
        return next((r for r in self._all_rows() if r.id == int(row_id)), None)

    def find(self, answers_sha256: str, split_sha256: str, scorer_version: str) -> StoredRow | None:
        with self._connect() as con:
            rec = con.execute("SELECT id FROM submissions WHERE answers_sha256 = ? AND split_sha256 = ? "
                              "AND scorer_version = ?", (answers_sha256, split_sha256, scorer_version)).fetchone()
        return None if rec is None else self.get(rec[0])

    def answers(self, row_id: int) -> list[dict]:
        """The stored answers: canonical rows `[{"video", "task", "response"[, "fields"]}]`."""
        with self._connect() as con:
            rec = con.execute("SELECT answers_zlib FROM submissions WHERE id = ?", (int(row_id),)).fetchone()
        if rec is None:
            raise RowNotFound(f"no leaderboard row #{row_id}")
        return unpack_answers(rec[0])

    # --- writing --------------------------------------------------------------------------------

    def add(self, *, model: str, answers_sha256: str, files_sha256: str, files: Sequence[tuple[str, str]],
            result: dict, answers: list[dict], link: str = "", notes: str = "",
            provenance: dict | None = None) -> tuple[StoredRow, bool]:
        """Insert a scored submission; (row, True), or (the existing row, False) for known answers."""
        split_sha256 = result["split"]["sha256"]
        version = str(result["scorer_version"])
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO submissions (model, link, notes, submitted_at, answers_sha256, files_sha256, "
                "files_json, split_sha256, scorer_version, provenance_json, result_json, answers_zlib) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (answers_sha256, split_sha256, scorer_version) DO NOTHING",
                (model, link, notes, now_utc(), answers_sha256, files_sha256, json.dumps([list(f) for f in files]),
                 split_sha256, version, json.dumps(provenance) if provenance else "", json.dumps(result),
                 pack_answers(answers)))
            added = cur.rowcount == 1
        row = self.find(answers_sha256, split_sha256, version)
        assert row is not None, "a row just inserted or found by its unique key must exist"
        return row, added

    def update_result(self, row_id: int, result: dict) -> None:
        """Replace a row's scores after re-scoring (its split and scorer version follow the result)."""
        with self._write() as con:
            con.execute("UPDATE submissions SET result_json = ?, split_sha256 = ?, scorer_version = ?, "
                        "rescored_at = ?, revision = revision + 1 WHERE id = ?",
                        (json.dumps(result), result["split"]["sha256"], str(result["scorer_version"]),
                         now_utc(), int(row_id)))

    def set_hidden(self, row_id: int, hidden: bool, *, admin_token: str | None) -> None:
        check_admin(admin_token)
        with self._write() as con:
            changed = con.execute("UPDATE submissions SET hidden = ? WHERE id = ?",
                                  (int(bool(hidden)), int(row_id))).rowcount
        if not changed:
            raise RowNotFound(f"no leaderboard row #{row_id}")

    def delete(self, row_id: int, *, admin_token: str | None) -> None:
        check_admin(admin_token)
        with self._write() as con:
            changed = con.execute("DELETE FROM submissions WHERE id = ?", (int(row_id),)).rowcount
        if not changed:
            raise RowNotFound(f"no leaderboard row #{row_id}")

    def snapshot(self, dest: Path | str) -> Path:
        """A consistent single-file copy (SQLite backup API: includes what is still in the WAL)."""
        dest = Path(dest)
        with self._connect() as con, contextlib.closing(sqlite3.connect(dest)) as out:
            con.backup(out)
        return dest


def _migrate_v1(con: sqlite3.Connection) -> None:
    """Schema 1 -> 2 in the open transaction: identity by canonical answers, provenance, revision.

    Every row is kept with its id (and the id sequence, so ids are never reused). Rows that
    schema 1 kept apart although their answers are the same (e.g. shuffled files) all stay; the
    later ones get a marked identity, so new submissions point at the first.
    """
    con.execute("ALTER TABLE submissions RENAME TO submissions_v1")
    con.execute(_SUBMISSIONS)
    seen: dict[tuple, int] = {}
    for rec in con.execute("SELECT id, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, "
                           "scorer_version, result_json, answers_zlib, hidden, rescored_at "
                           "FROM submissions_v1 ORDER BY id").fetchall():
        (id_, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, version, result_json,
         blob, hidden, rescored_at) = rec
        rows = sorted(unpack_answers(blob), key=lambda r: (r["video"], r["task"]))
        digest = answers_digest(rows)
        key = (digest, split_sha256, version)
        if key in seen:
            digest = f"{digest}:same-answers-as-#{seen[key]}"
        seen.setdefault(key, id_)
        con.execute("INSERT INTO submissions (id, model, link, notes, submitted_at, answers_sha256, files_sha256, "
                    "files_json, split_sha256, scorer_version, hidden, rescored_at, result_json, answers_zlib) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (id_, model, link, notes, submitted_at, digest, files_sha256, files_json, split_sha256,
                     version, hidden, rescored_at, result_json, blob))
    old = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'submissions_v1'").fetchone()
    con.execute("DROP TABLE submissions_v1")
    if old is not None:
        con.execute("DELETE FROM sqlite_sequence WHERE name = 'submissions'")
        con.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('submissions', ?)", (old[0],))


def check_admin(token: str | None) -> None:
    """Admin actions need `CRASHCHAT_ADMIN_TOKEN` set and the same token given."""
    expected = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
    if not expected:
        raise PermissionError("admin actions are disabled: CRASHCHAT_ADMIN_TOKEN is not set")
    if not isinstance(token, str) or not token or not hmac.compare_digest(token.encode("utf-8"),
                                                                         expected.encode("utf-8")):
        raise PermissionError("wrong admin token")

