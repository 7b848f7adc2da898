"""The leaderboard's database: verified submissions in SQLite, with their answers and scores.

One SQLite file (stdlib `sqlite3`, WAL so readers never wait for the single writer) at
`CRASHCHAT_DB`, else `<user data dir>/crashchat/leaderboard.sqlite3`. Every operation opens its
own connection, so threads (Gradio workers) never share one.

Schema, migrations, reading and writing rows live here; what may be stored (form checks,
identity, scoring, re-scoring) is `leaderboard.intake`, the Hub mirror `leaderboard.hubsync`, the
maintenance commands `python -m leaderboard {list,rescore,hide,unhide,delete}`.

Rows are of two kinds: `verified` (answers a submitter uploaded, scored here) and `evaluated`
(answers the leaderboard's own worker produced for an evaluation request: the row's `evaluation`
column says which request, worker, GPU and code version; schema 4).

What a row costs (schema 4), each part stored once:
- light columns (table `submissions`): model, submitter, link, notes, time, digests, flags,
  `overall`, `complete`; everything else of a row is in `payloads`, so scanning every row's light
  columns reads small records only;
- the answers exactly as submitted, for re-scoring: the list of (video, task) keys is stored once
  per distinct list (`answer_keys`: every complete submission shares one) and the row keeps only
  its responses, in that order, bz2-compressed;
- the scorer JSON cut in two (`leaderboard.summary`): the summary the tables read for every row
  and the detail (per source, validation, files) read for one row at a time, both compressed; the
  split's description is kept once per split (`splits`).

A row's identity is its `answers_sha256` (`submission.scored_digest`: what the scorer reads of
the answers), a UNIQUE column: deduplication is one indexed lookup. Model names are looked up by
their two skeletons (`identity.name_keys`), indexed too.

Reading is cached: every write bumps a `generation` counter in the database (so a write by
another process is seen too), and `rows()` parses a row's light columns only when it is new or
changed; summaries are read only for the rows asked for.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import hashlib
import hmac
import json
import lzma
import os
import sqlite3
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from leaderboard import identity
from leaderboard.submission import SubmissionError, answers_digest, parse_canonical, scored_digest
from leaderboard.summary import is_complete, join_result, split_result

SCHEMA_VERSION = 4
DB_NAME = "leaderboard.sqlite3"
VERIFIED = "verified"
EVALUATED = "evaluated"
"""A stored row's kind (`StoredRow.kind`): self-reported answers, or answers the leaderboard's own
worker produced; `table.KINDS` adds the paper's reported rows."""

# Columns in this order: SQLite reads a row's leading columns without touching the large ones.
_SUBMISSIONS = """
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    submitter TEXT NOT NULL DEFAULT '',
    link TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    submitted_at TEXT NOT NULL,
    answers_sha256 TEXT NOT NULL UNIQUE,
    files_sha256 TEXT NOT NULL,
    files_json TEXT NOT NULL,
    split_sha256 TEXT NOT NULL,
    scorer_version TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    rescored_at TEXT NOT NULL DEFAULT '',
    revision INTEGER NOT NULL DEFAULT 0,
    provenance_json TEXT NOT NULL DEFAULT '',
    complete INTEGER NOT NULL DEFAULT 0,
    overall REAL,
    name_key TEXT NOT NULL DEFAULT '',
    name_key2 TEXT NOT NULL DEFAULT '',
    evaluation_json TEXT NOT NULL DEFAULT ''
)"""
# The large parts apart from the light columns: a scan of every row's light columns (after each
# write) reads small records only, each on one page.
_PAYLOADS = """
CREATE TABLE payloads (
    id INTEGER PRIMARY KEY REFERENCES submissions (id),
    summary_zlib BLOB NOT NULL,
    detail_xz BLOB NOT NULL,
    keys_id INTEGER NOT NULL REFERENCES answer_keys (id),
    answers_bz2 BLOB NOT NULL
)"""
PAGE_SIZE = 2048
"""Bytes per database page of a new file: a light row (with its provenance) fits on one page, and a
payload (about 20 kB) wastes half a page on average, not the half of 4 kB of SQLite's default."""
_TABLES = (
    _SUBMISSIONS,
    _PAYLOADS,
    "CREATE INDEX submissions_name_key ON submissions (name_key)",
    "CREATE INDEX submissions_name_key2 ON submissions (name_key2)",
    "CREATE INDEX submissions_submitter ON submissions (submitter, submitted_at)",
    # Covering: the scan that tells which rows changed since the last read reads this index only.
    "CREATE INDEX submissions_state ON submissions (id, revision, hidden)",
    "CREATE TABLE answer_keys (id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL UNIQUE, "
    "keys_zlib BLOB NOT NULL)",
    "CREATE TABLE splits (sha256 TEXT PRIMARY KEY, info_json TEXT NOT NULL)",
)

# Schema 2 (kept: a schema-1 database goes 1 -> 2 -> 3).
_SUBMISSIONS_V2 = """
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
    UNIQUE (answers_sha256, split_sha256, scorer_version)
)"""

DISK_FULL = "the leaderboard's disk is full; nothing was stored"


class StoreError(Exception):
    """The database cannot be used (e.g. written by a newer schema, a full disk); the message says why."""


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


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime(TIME_FORMAT)


def parse_stamp(text: str) -> datetime:
    """A stored `TIME_FORMAT` stamp as an aware UTC datetime."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One verified submission's light columns (scores: `Store.summaries`, `Store.result`)."""

    id: int
    model: str
    submitter: str
    """Who submitted it (`identity.Submitter.name`); empty for rows from before schema 3."""
    link: str
    notes: str
    submitted_at: str
    answers_sha256: str
    """What the scorer reads of the answers (`submission.scored_digest`): the row's identity."""
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
    complete: bool
    """Every question of every task answered (parsed)."""
    overall: float | None
    """The overall score (strict protocol), None when a task has no value."""
    evaluation: dict | None = None
    """Set only when the leaderboard's own worker produced the answers (an evaluation request):
    the request, worker, GPU and code version. None for self-reported (`verified`) rows."""

    @property
    def kind(self) -> str:
        """`evaluated` (answers made by a leaderboard worker) or `verified` (self-reported, scored here)."""
        return EVALUATED if self.evaluation else VERIFIED

    def as_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "kind": self.kind}


_LIGHT = ("id, model, submitter, link, notes, submitted_at, answers_sha256, files_sha256, files_json, "
          "split_sha256, scorer_version, hidden, rescored_at, revision, provenance_json, complete, overall, "
          "evaluation_json")


def _row(rec: tuple) -> StoredRow:
    (id_, model, submitter, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256,
     scorer_version, hidden, rescored_at, revision, provenance_json, complete, overall, evaluation_json) = rec
    return StoredRow(id_, model, submitter, link, notes, submitted_at, answers_sha256, files_sha256,
                     [tuple(f) for f in json.loads(files_json)], split_sha256, scorer_version, bool(hidden),
                     rescored_at, revision, json.loads(provenance_json) if provenance_json else None,
                     bool(complete), overall, json.loads(evaluation_json) if evaluation_json else None)


# --- how answers and results are packed -----------------------------------------------------------


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def pack_json(value) -> bytes:
    return zlib.compress(_dumps(value), 9)


def unpack_json(blob: bytes):
    return json.loads(zlib.decompress(blob).decode("utf-8"))


# The detail (read for one row at a time) takes LZMA: a sixth smaller than zlib, slower to unpack,
# which only a row's details pay.
_LZMA = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 16}]  # a 64 kB window: details are ~13 kB


def pack_detail(value) -> bytes:
    return lzma.compress(_dumps(value), format=lzma.FORMAT_RAW, filters=_LZMA)


def unpack_detail(blob: bytes):
    return json.loads(lzma.decompress(blob, format=lzma.FORMAT_RAW, filters=_LZMA).decode("utf-8"))


@dataclass(frozen=True)
class PackedAnswers:
    """Canonical answers ready to store: their key list (shared) and their responses (the row's)."""

    keys_sha256: str
    keys_zlib: bytes
    values_bz2: bytes


def pack_answers(rows: Sequence[dict]) -> PackedAnswers:
    """Canonical rows (`submission.canonical_rows`) as a (video, task) key list and the responses
    in that order (a response with the authors' `pred_*` fields becomes `{"response", "fields"}`).
    Responses compress best on their own (bz2: a complete submission of model-like text is about
    14 kB); the key list is the same for every complete submission on a split."""
    keys = _dumps([[r["video"], r["task"]] for r in rows])
    values = [r.get("response") if "fields" not in r else {"response": r.get("response"), "fields": r["fields"]}
              for r in rows]
    return PackedAnswers(hashlib.sha256(keys).hexdigest(), zlib.compress(keys, 9), bz2.compress(_dumps(values), 9))


def unpack_answers(keys_zlib: bytes, values_bz2: bytes) -> list[dict]:
    keys = json.loads(zlib.decompress(keys_zlib).decode("utf-8"))
    values = json.loads(bz2.decompress(values_bz2).decode("utf-8"))
    rows = []
    for (video, task), value in zip(keys, values, strict=True):
        if isinstance(value, dict):
            rows.append({"video": video, "task": task, "response": value.get("response"), "fields": value["fields"]})
        else:
            rows.append({"video": video, "task": task, "response": value})
    return rows


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the message on 3.10
        return code == getattr(sqlite3, "SQLITE_FULL", 13) or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class Store:
    """The SQLite file of verified rows. Cheap to create; safe to use from many threads."""

    def __init__(self, path: Path | str | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cache: tuple[int, list[StoredRow]] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create its folder ({exc.strerror or exc})") from None
        try:
            self._create_or_migrate()
        except sqlite3.DatabaseError as exc:  # not SQLite, a folder, unreadable: the operator's setting
            raise StoreError(f"{self.path}: cannot be used as the leaderboard database ({exc}); point "
                             "CRASHCHAT_DB (or --db) at a leaderboard database or a new file") from None

    def _create_or_migrate(self) -> None:
        """The tables of a new file; an older schema's migrated in place (one transaction)."""
        migrated = False
        with self._connect() as con:
            con.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only; an existing one keeps its own
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
            if version > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise StoreError(f"{self.path}: schema version {version} is newer than this code's "
                                 f"{SCHEMA_VERSION}; upgrade CrashChat or point CRASHCHAT_DB elsewhere")
            try:
                if version == 0:
                    for statement in _TABLES:
                        con.execute(statement)
                if version == 1:
                    _migrate_v1(con)
                if version in (1, 2):
                    _migrate_v2(con)
                    migrated = True
                if version == 3:  # schema 4: the evaluation column (rows of schema 3 are self-reported)
                    con.execute("ALTER TABLE submissions ADD COLUMN evaluation_json TEXT NOT NULL DEFAULT ''")
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                con.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            except BaseException as exc:
                _rollback(con)
                if _is_disk_full(exc):
                    raise StoreError(f"{self.path}: the disk is full; the database was not changed") from None
                raise
            con.execute("COMMIT")
            if migrated:
                con.execute("VACUUM")  # the old schema's pages back to the file system

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes), so two
        # writers queue on the database lock instead of failing on a read->write upgrade.
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crash of the app, one fsync per checkpoint
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that also bumps the generation, so every reader's cache expires.

        Any failure rolls everything back (nothing half stored); a full disk becomes a `StoreError`
        with `DISK_FULL` as its message.
        """
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                con.execute("COMMIT")
            except BaseException as exc:
                _rollback(con)
                if _is_disk_full(exc):
                    raise StoreError(DISK_FULL) from None
                raise

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
                return list(cached[1])
            # What can change in a row bumps its revision (re-scoring) or flips `hidden`: those two
            # say which rows to read again; the others are the same objects as before.
            known = {row.id: row for row in cached[1]} if cached is not None else {}
            state = con.execute("SELECT id, revision, hidden FROM submissions ORDER BY id").fetchall()
            stale = [i for i, revision, hidden in state
                     if i not in known or known[i].revision != revision or known[i].hidden != bool(hidden)]
            fresh = {}
            for k in range(0, len(stale), 500):
                chunk = stale[k:k + 500]
                marks = ",".join("?" * len(chunk))
                for rec in con.execute(f"SELECT {_LIGHT} FROM submissions WHERE id IN ({marks})", chunk):
                    fresh[rec[0]] = _row(rec)
            con.execute("COMMIT")
        rows = [fresh[i] if i in fresh else known[i] for i, _, _ in state]
        with self._lock:
            self._cache = (generation, rows)
        return list(rows)

    def get(self, row_id: int) -> StoredRow | None:
        """One row by id (hidden or not), read directly."""
        with self._connect() as con:
            rec = con.execute(f"SELECT {_LIGHT} FROM submissions WHERE id = ?", (int(row_id),)).fetchone()
        return None if rec is None else _row(rec)

    def find(self, answers_sha256: str) -> StoredRow | None:
        """The row with these answers (`submission.scored_digest`), if any: one indexed lookup."""
        with self._connect() as con:
            rec = con.execute(f"SELECT {_LIGHT} FROM submissions WHERE answers_sha256 = ?",
                              (answers_sha256,)).fetchone()
        return None if rec is None else _row(rec)

    def summaries(self, row_ids: Iterable[int]) -> dict[int, dict]:
        """Row id -> the summary the tables read (`leaderboard.summary`), for the rows asked for."""
        ids = [int(i) for i in row_ids]
        out = {}
        with self._connect() as con:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for id_, blob in con.execute(f"SELECT id, summary_zlib FROM payloads WHERE id IN ({marks})", chunk):
                    out[id_] = unpack_json(blob)
        return out

    def result(self, row_id: int) -> dict:
        """A row's whole scorer JSON, as `scoring.score` returned it."""
        with self._connect() as con:
            rec = con.execute("SELECT d.summary_zlib, d.detail_xz, p.info_json FROM submissions s "
                              "JOIN payloads d ON d.id = s.id LEFT JOIN splits p ON p.sha256 = s.split_sha256 "
                              "WHERE s.id = ?", (int(row_id),)).fetchone()
        if rec is None:
            raise RowNotFound(f"no leaderboard row #{row_id}")
        return join_result(unpack_json(rec[0]), unpack_detail(rec[1]), json.loads(rec[2]) if rec[2] else {})

    def answers(self, row_id: int) -> list[dict]:
        """The stored answers: canonical rows `[{"video", "task", "response"[, "fields"]}]`."""
        with self._connect() as con:
            rec = con.execute("SELECT k.keys_zlib, d.answers_bz2 FROM payloads d JOIN answer_keys k "
                              "ON k.id = d.keys_id WHERE d.id = ?", (int(row_id),)).fetchone()
        if rec is None:
            raise RowNotFound(f"no leaderboard row #{row_id}")
        return unpack_answers(*rec)

    def name_holders(self, keys: Sequence[str], con: sqlite3.Connection | None = None) -> list[identity.Holder]:
        """Rows whose model name shares a skeleton with `keys` (`identity.name_keys`), by id."""
        keys = list(dict.fromkeys(keys))
        marks = ",".join("?" * len(keys))
        query = (f"SELECT submitter, id, model, hidden FROM submissions WHERE name_key IN ({marks}) "
                 f"OR name_key2 IN ({marks}) ORDER BY id")
        if con is not None:
            found = con.execute(query, keys + keys).fetchall()
        else:
            with self._connect() as own:
                found = own.execute(query, keys + keys).fetchall()
        return [identity.Holder(s, i, m, bool(h)) for s, i, m, h in found]

    def submission_times(self, submitter: str, since: datetime) -> list[datetime]:
        """When `submitter`'s stored rows were submitted, from `since` on (for the rate limit)."""
        with self._connect() as con:
            found = con.execute("SELECT submitted_at FROM submissions WHERE submitter = ? AND submitted_at >= ?",
                                (submitter, since.strftime(TIME_FORMAT))).fetchall()
        return [parse_stamp(t) for (t,) in found]

    # --- writing --------------------------------------------------------------------------------

    def add(self, *, model: str, answers_sha256: str, files_sha256: str, files: Sequence[tuple[str, str]],
            result: dict, answers: PackedAnswers, submitter: str = "", link: str = "", notes: str = "",
            provenance: Mapping[str, object] | None = None, evaluation: Mapping[str, object] | None = None,
            check_name: Callable[[list[identity.Holder]], None] | None = None) -> tuple[StoredRow, bool]:
        """Insert a scored submission; (row, True), or (the existing row, False) for known answers.

        `evaluation`: only for answers a leaderboard worker produced (`leaderboard.evaluation_api`);
        it makes the row `evaluated`. No user-sent field can set it.

        In the same transaction as the insert, `check_name` sees the rows whose model name clashes
        with this one (`name_holders`) and may refuse by raising: two submissions racing for a
        name cannot both get it.
        """
        keys = identity.name_keys(model)
        summary, detail, split_info = split_result(result)
        overall = summary["overall"].get("value")
        cover = {t: tuple(c) for t, c in summary["coverage"].items()}
        values = (model, submitter, link, notes, now_utc(), answers_sha256, files_sha256,
                  json.dumps([list(f) for f in files]), split_info.get("sha256", ""), str(result["scorer_version"]),
                  json.dumps(provenance) if provenance else "", int(is_complete(cover)), overall, keys[0], keys[1],
                  json.dumps(evaluation) if evaluation else "")
        payload = (pack_json(summary), pack_detail(detail), answers.values_bz2)
        with self._write() as con:
            known = con.execute(f"SELECT {_LIGHT} FROM submissions WHERE answers_sha256 = ?",
                                (answers_sha256,)).fetchone()
            if known is not None:
                return _row(known), False
            if check_name is not None:
                check_name(self.name_holders(keys, con))
            con.execute("INSERT OR IGNORE INTO splits VALUES (?, ?)",
                        (split_info.get("sha256", ""), json.dumps(split_info)))
            con.execute("INSERT OR IGNORE INTO answer_keys (sha256, keys_zlib) VALUES (?, ?)",
                        (answers.keys_sha256, answers.keys_zlib))
            keys_id = con.execute("SELECT id FROM answer_keys WHERE sha256 = ?", (answers.keys_sha256,)).fetchone()[0]
            cur = con.execute(
                "INSERT INTO submissions (model, submitter, link, notes, submitted_at, answers_sha256, files_sha256, "
                "files_json, split_sha256, scorer_version, provenance_json, complete, overall, name_key, name_key2, "
                "evaluation_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
            row_id = cur.lastrowid
            con.execute("INSERT INTO payloads (id, summary_zlib, detail_xz, answers_bz2, keys_id) VALUES (?,?,?,?,?)",
                        (row_id, *payload, keys_id))
        (model, submitter, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256,
         version, provenance_json, complete, overall, _key, _key2, evaluation_json) = values
        return _row((row_id, model, submitter, link, notes, submitted_at, answers_sha256, files_sha256, files_json,
                     split_sha256, version, 0, "", 0, provenance_json, complete, overall, evaluation_json)), True

    def update_result(self, row_id: int, result: dict) -> None:
        """Replace a row's scores after re-scoring (its split and scorer version follow the result)."""
        summary, detail, split_info = split_result(result)
        cover = {t: tuple(c) for t, c in summary["coverage"].items()}
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO splits VALUES (?, ?)",
                        (split_info.get("sha256", ""), json.dumps(split_info)))
            changed = con.execute(
                "UPDATE submissions SET split_sha256 = ?, scorer_version = ?, complete = ?, overall = ?, "
                "rescored_at = ?, revision = revision + 1 WHERE id = ?",
                (split_info.get("sha256", ""), str(result["scorer_version"]), int(is_complete(cover)),
                 summary["overall"].get("value"), now_utc(), int(row_id))).rowcount
            if not changed:
                raise RowNotFound(f"no leaderboard row #{row_id}")
            con.execute("UPDATE payloads SET summary_zlib = ?, detail_xz = ? WHERE id = ?",
                        (pack_json(summary), pack_detail(detail), int(row_id)))

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
            con.execute("DELETE FROM payloads WHERE id = ?", (int(row_id),))
            # A key list no row uses any more goes too (they are shared, so only then).
            con.execute("DELETE FROM answer_keys WHERE id NOT IN (SELECT keys_id FROM payloads)")

    def snapshot(self, dest: Path | str) -> Path:
        """A consistent single-file copy (SQLite backup API: includes what is still in the WAL)."""
        dest = Path(dest)
        with self._connect() as con, contextlib.closing(sqlite3.connect(dest)) as out:
            con.backup(out)
        return dest


def _rollback(con: sqlite3.Connection) -> None:
    """Roll back the open transaction (SQLite may already have, after a full disk)."""
    if con.in_transaction:
        con.execute("ROLLBACK")


def _migrate_v1(con: sqlite3.Connection) -> None:
    """Schema 1 -> 2 in the open transaction: identity by canonical answers, provenance, revision.

    Every row is kept with its id (and the id sequence, so ids are never reused). Rows that
    schema 1 kept apart although their answers are the same (e.g. shuffled files) all stay; the
    later ones get a marked identity, so new submissions point at the first.
    """
    con.execute("ALTER TABLE submissions RENAME TO submissions_v1")
    con.execute(_SUBMISSIONS_V2)
    seen: dict[tuple, int] = {}
    for rec in con.execute("SELECT id, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, "
                           "scorer_version, result_json, answers_zlib, hidden, rescored_at "
                           "FROM submissions_v1 ORDER BY id").fetchall():
        (id_, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, version, result_json,
         blob, hidden, rescored_at) = rec
        rows = sorted(json.loads(zlib.decompress(blob).decode("utf-8")), key=lambda r: (r["video"], r["task"]))
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
    _keep_sequence(con, "submissions_v1")
    con.execute("DROP TABLE submissions_v1")


def _keep_sequence(con: sqlite3.Connection, old: str) -> None:
    """Carry the id sequence over from the renamed table, so ids are never reused."""
    found = con.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (old,)).fetchone()
    if found is not None:
        con.execute("DELETE FROM sqlite_sequence WHERE name = 'submissions'")
        con.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('submissions', ?)", (found[0],))


def _migrate_v2(con: sqlite3.Connection) -> None:
    """Schema 2 -> 3 in the open transaction: every row kept, with its id, scores and answers.

    - identity: what the scorer reads of the answers (`scored_digest`), unique. Rows that schema
      2 kept apart although the scorer reads the same (`Yes` and `yes`) all stay; the later ones
      get a marked identity, so new submissions point at the first. Answers that no longer read
      keep their schema-2 identity, marked.
    - submitter: unrecorded (`identity.UNRECORDED`), so nobody can take these rows' names.
    - the answers re-packed (shared key lists), the scorer JSON cut into summary, detail and split.
    Scores are not recomputed here (that needs the split): the scorer version of these rows is
    older than `SCORER_VERSION`, so `python -m leaderboard rescore` (or the Admin tab) brings
    them up to date, adding the overall score's interval.
    """
    con.execute("ALTER TABLE submissions RENAME TO submissions_v2")
    for name in ("submissions_name_key", "submissions_name_key2", "submissions_submitter", "submissions_state"):
        con.execute(f"DROP INDEX IF EXISTS {name}")
    for statement in _TABLES:
        con.execute(statement)
    seen: dict[str, int] = {}
    query = ("SELECT id, model, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256, "
             "scorer_version, hidden, rescored_at, revision, provenance_json, result_json, answers_zlib "
             "FROM submissions_v2 ORDER BY id")
    for rec in con.execute(query).fetchall():
        (id_, model, link, notes, submitted_at, old_digest, files_sha256, files_json, split_sha256, version, hidden,
         rescored_at, revision, provenance_json, result_json, blob) = rec
        rows = json.loads(zlib.decompress(blob).decode("utf-8"))
        try:
            digest = scored_digest(parse_canonical(rows, f"row-{id_}"))
        except SubmissionError:
            digest = f"{old_digest}:unreadable-answers"
        if digest in seen:
            digest = f"{digest}:same-answers-as-#{seen[digest]}"
        seen.setdefault(digest, id_)
        result = json.loads(result_json)
        summary, detail, split_info = split_result(result)
        cover = {t: tuple(c) for t, c in summary["coverage"].items()}
        packed = pack_answers(rows)
        keys = identity.name_keys(model)
        con.execute("INSERT OR IGNORE INTO splits VALUES (?, ?)", (split_sha256, json.dumps(split_info)))
        con.execute("INSERT OR IGNORE INTO answer_keys (sha256, keys_zlib) VALUES (?, ?)",
                    (packed.keys_sha256, packed.keys_zlib))
        keys_id = con.execute("SELECT id FROM answer_keys WHERE sha256 = ?", (packed.keys_sha256,)).fetchone()[0]
        con.execute(
            "INSERT INTO submissions (id, model, submitter, link, notes, submitted_at, answers_sha256, files_sha256, "
            "files_json, split_sha256, scorer_version, hidden, rescored_at, revision, provenance_json, complete, "
            "overall, name_key, name_key2) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (id_, model, identity.UNRECORDED, link, notes, submitted_at, digest, files_sha256, files_json,
             split_sha256, version, hidden, rescored_at, revision, provenance_json, int(is_complete(cover)),
             summary["overall"].get("value"), keys[0], keys[1]))
        con.execute("INSERT INTO payloads (id, summary_zlib, detail_xz, keys_id, answers_bz2) VALUES (?,?,?,?,?)",
                    (id_, pack_json(summary), pack_detail(detail), keys_id, packed.values_bz2))
    _keep_sequence(con, "submissions_v2")
    con.execute("DROP TABLE submissions_v2")


def check_admin(token: str | None) -> None:
    """Admin actions need `CRASHCHAT_ADMIN_TOKEN` set and the same token given."""
    expected = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
    if not expected:
        raise PermissionError("admin actions are disabled: CRASHCHAT_ADMIN_TOKEN is not set")
    if not isinstance(token, str) or not token or not hmac.compare_digest(token.encode("utf-8"),
                                                                         expected.encode("utf-8")):
        raise PermissionError("wrong admin token")
