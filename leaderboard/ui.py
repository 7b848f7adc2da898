"""The leaderboard tab: the paper's reported rows beside verified submissions, scored here.

`app.py` calls `build()` inside its "Leaderboard" tab. All logic lives in `Board` (plain
methods over `store`, `table`, `intake` and `scoring`, testable without a browser); `build()`
only lays out Gradio components, one builder per section (`_main_table_section`,
`_per_task_section`, `_compare_section`, `_failures_section`, `_submit_section`,
`_admin_section`, `_api_section`), and wires them to those methods.

Named API endpoints (usable from `gradio_client`):
- `/submit` (files, model, link, notes, provenance=None) -> the scorer's JSON plus a
  `leaderboard` block; on a Space the caller is the signed-in user, or the owner of the token
  given as `Client(..., oauth_token=...)`;
- `/leaderboard` (protocol = "paper", details = False, limit = 100, offset = 0, kind = "") -> `{"total",
  "offset", "limit", "rows"}`: a page of row dicts (model, submitter, kind, overall, complete,
  coverage, headline metrics; with `details` also intervals, every metric and the provenance),
  in the table's default order (the overall score);
- `/export_csv` (protocol = "paper") -> the CSV file of the table's default view;
- `/request_evaluation` (model_id, revision = "main", frames = "paper") -> `{"request_id", "status",
  "duplicate", ...}` and `/evaluation_queue` () -> the requests, newest first (public; a request
  counts as a submission towards the caller's limit);
- workers only (`CRASHCHAT_WORKER_TOKEN`): `/claim_evaluation`, `/renew_evaluation`,
  `/finish_evaluation`, `/fail_evaluation` (the contract: `crashchat/worker.py`).

User text (model names, notes, links, file contents) is only ever shown in components that
render plain text (Dataframe `str` cells, Textbox, JSON, Dropdown labels), never Markdown/HTML;
error toasts are HTML-escaped. Every event runs in Gradio's queue, in concurrency groups
(`QUEUES`), so a burst of one kind of request cannot starve the others.

Scale: views and `/leaderboard` page (`PAGE_SIZE` rows at a time); every row's compact form is
kept in memory and rebuilt only when that row changes, so a write costs one row's parsing, not
every row's.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import math
import os
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gradio as gr
import pandas as pd

from crashchat.cli import AUTHORS_MAX_NEW_TOKENS
from crashchat.provenance import Provenance, ProvenanceError, describe
from crashchat.settings import from_env, positive, whole
from crashchat.tasks import TASKS, get_task
from leaderboard import SCORER_VERSION, identity, scoring, table
from leaderboard.evaluation_api import API_ERRORS, EvaluationAPI
from leaderboard.evaluations import DEFAULT_FRAMES, REQUEST_FRAMES, EvaluationQueue, EvaluationRequest
from leaderboard.hubsync import HubSync
from leaderboard.intake import (
    MAX_FILES,
    MAX_NAME,
    MAX_REQUEST_BYTES,
    Outcome,
    SubmitError,
    check_entry,
    rescore,
    stored_submission,
    submit,
    validate,
)
from leaderboard.split import Split, SplitError, cache_dir, load_split
from leaderboard.store import RowNotFound, Store, StoredRow, StoreError, check_admin
from leaderboard.submission import MAX_BYTES, MAX_RESPONSE, Submission, SubmissionError
from leaderboard.summary import SAME


class BoardError(ValueError):
    """A request the tab cannot serve as asked (pick a row, no such row, a bad choice); one line."""


USER_ERRORS = (SubmitError, SubmissionError, ProvenanceError, SplitError, PermissionError, StoreError, RowNotFound,
               BoardError, identity.IdentityError, *API_ERRORS)
"""What a user can cause; anything else (a KeyError included) is a bug and surfaces as one."""

# Concurrency groups: (id, how many at once). Reads are cached and cheap; scoring is CPU-bound.
QUEUES = {
    "read": ("board-read", 2),        # table, pickers, per-task, per-source, details
    "api": ("board-api", 2),          # /leaderboard, /export_csv
    "heavy": ("board-heavy", 1),      # compare, failures, admin (rebuild and re-score answers)
    "validate": ("board-validate", 1),  # reading uploads for the validation report
    "submit": ("board-submit", 1),    # scoring a submission (a worker's finished evaluation too)
    "worker": ("board-worker", 2),    # requests, the queue, workers' claims and lease renewals
}

PAGE_SIZE = 100
"""Rows per page of the table, the Per-task view and `/leaderboard` (default `limit`)."""
MAX_LIMIT = 1000
"""The most rows one `/leaderboard` call returns."""
PICKER_ROWS = 200
"""Row pickers list the best rows in table order; any other row is picked by typing `#id`."""

INTRO = """\
**Verified** rows were scored here from submitted answers on the CrashChat test split (each shows
who submitted it, its split fingerprint, scorer version, time and answers hash). **Evaluated** rows
(green) were scored the same way from answers the leaderboard's own workers produced for a Hub model
id (*Evaluate a model* in the Submit tab); each names the worker, GPU and code version. **Reported** rows
are the numbers printed in the paper, unchanged, shown only under the paper protocol. The *strict*
protocol counts every split record once (a missing or unparseable answer counts as wrong); the
*paper* protocol reproduces the published scoring (it drops unparseable Yes/No and empty texts).
A row marked *partial* did not answer every question of a task (a missing, empty or unparseable
answer is not an answer, under either protocol) and ranks below every row that did.
"""

SUBMIT_HELP = f"""\
Upload one or more prediction files: the authors' per-task JSON files, or JSONL/CSV rows with
`video`, `task` and `response` (the raw model text); see the README for the layout and
`python -m crashchat predict` to make them. Add the `.meta.json` file that `predict` writes beside
its output to record how the predictions were produced (optional). At most {MAX_FILES} files,
{MAX_BYTES // 1024 ** 2} MB each and {MAX_REQUEST_BYTES // 1024 ** 2} MB together; an answer at most
{MAX_RESPONSE // 1024} k characters. The validation report appears when the files are uploaded; **Submit**
scores them and adds the row. Answers the scorer reads the same way as a row already on the board
(in any order, layout, file split, case or spacing) point at that row.

A model name is yours once you use it: it cannot be a paper row's name (or look like one, or say
"(paper)"), another submitter's name, or one of your own names again. On a Hugging Face Space you
submit as the user you signed in as, at most a few times a day.
"""

VALIDATION_COLUMNS = ["Task", "Expected", "Matched", "Answered", "Missing", "Unknown", "Unparseable"]
ADMIN_ACTIONS = ("hide", "unhide", "delete", "re-score stale rows")

VERIFIED_STYLE = "background-color: rgba(37, 99, 235, 0.10)"
EVALUATED_STYLE = "background-color: rgba(22, 163, 74, 0.12)"
PARTIAL_STYLE = "color: #9a3412"

# Widths (px): the default columns fit a 1280-px screen; picked columns add to the right.
WIDTHS = {"Model": 188, "Submitter": 112, "Answered": 112}
METRIC_WIDTH, OVERALL_WIDTH, INFO_WIDTH = 113, 124, 160
FAILURE_WIDTHS: list[str | int] = [170, 110, 300, 300, 140, 70]

CSS = """
#board-main th, #board-main th *, #board-task-table th, #board-task-table th * {
  white-space: pre-line !important; word-break: keep-all !important; overflow-wrap: normal !important;
  hyphens: none !important;
}
#board-main .virtual-table-viewport, #board-task-table .virtual-table-viewport,
#board-failures .virtual-table-viewport {
  overflow-x: auto !important; scrollbar-width: auto !important;
  scrollbar-color: #6b7280 #e5e7eb !important;
}
#board-failures td, #board-failures td * { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
"""


def column_widths(headers: list[str]) -> list[str | int]:
    overall = table.OVERALL_COLUMN.header
    metric_headers = {c.header for c in table.main_columns()}
    return [WIDTHS.get(h, OVERALL_WIDTH if h == overall else METRIC_WIDTH if h in metric_headers else INFO_WIDTH)
            for h in headers]


def split_notice(split_dir: str | os.PathLike | None = None) -> str:
    """What the tab says at start about the test split: nothing when it is here, else where it is
    looked for and the environment variable to set (offline, the download cannot work)."""
    chosen = split_dir or os.environ.get("CRASHCHAT_SPLIT_DIR")
    if chosen:
        return "" if Path(chosen).is_dir() else (
            f"The test split folder {chosen} does not exist, so submissions cannot be scored: set "
            "CRASHCHAT_SPLIT_DIR to a folder holding the six crashchat_dada_video_total_<task>_test.json files.")
    folder = cache_dir()
    if all((folder / t.split_file()).is_file() for t in TASKS):
        return ""
    return ("The test split is not on this machine yet: it is downloaded from GitHub (Liangkd/CrashChat) on the "
            "first upload. Offline, that fails: set CRASHCHAT_SPLIT_DIR to a folder holding the six "
            "crashchat_dada_video_total_<task>_test.json files and restart.")


LEASE_ENV, LEASE_DEFAULT = "CRASHCHAT_LEASE_SECONDS", 600.0
"""How long a worker's claim lasts without a renewal (tests shorten it)."""
EVAL_TOKENS_ENV, EVAL_TOKENS_DEFAULT = "CRASHCHAT_EVAL_MAX_NEW_TOKENS", AUTHORS_MAX_NEW_TOKENS
"""The answer limit an evaluation must run with: the authors' 2048 (tests on tiny models use fewer)."""


@dataclass(frozen=True)
class BoardSettings:
    """The tab's settings from the environment, read when the app starts (before the Hub is
    contacted), so a bad value stops it with one line instead of failing a user later."""

    lease_seconds: float = LEASE_DEFAULT
    eval_max_new_tokens: int = EVAL_TOKENS_DEFAULT

    @classmethod
    def from_env(cls) -> BoardSettings:
        identity.submit_limit()  # read again at each submission (tests change it); checked here
        return cls(lease_seconds=from_env(LEASE_ENV, LEASE_DEFAULT, positive, "a positive number of seconds"),
                   eval_max_new_tokens=from_env(EVAL_TOKENS_ENV, EVAL_TOKENS_DEFAULT, whole(1),
                                                "a whole number of tokens (1 or more)"))


class Board:
    """The tab's state: the store, the optional Hub mirror, the lazily loaded split, view caches."""

    def __init__(self, store: Store | None = None, *, split_dir: str | os.PathLike | None = None,
                 sync: HubSync | None = None, bootstrap: int = 1000,
                 evaluations: EvaluationAPI | None = None, settings: BoardSettings | None = None) -> None:
        settings = settings if settings is not None else BoardSettings.from_env()
        self.store = store if store is not None else Store()
        self.split_dir = split_dir
        self.sync = sync
        self.bootstrap = bootstrap
        self._reported = table.reported_rows()
        self._split: Split | None = None
        self._split_lock = threading.Lock()
        self._csv_dir = Path(tempfile.mkdtemp(prefix="crashchat-board-"))
        self._exports: deque[Path] = deque()
        self._exports_lock = threading.Lock()
        self._cache: dict[tuple, object] = {}
        self._cache_generation: int | None = None
        self._cache_lock = threading.Lock()
        self._compact: dict[int, tuple[StoredRow, dict[str, table.Row]]] = {}
        """Row id -> (the stored row it was built from, its compact Row per protocol)."""
        self._compact_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._full: dict[tuple, table.Row] = {}
        """(id, revision, protocol) -> full Row (every metric, per source), for the few rows shown."""
        self.evaluations = evaluations if evaluations is not None else EvaluationAPI(
            EvaluationQueue(self.store.path, lease_seconds=settings.lease_seconds),
            self._file_evaluation, max_new_tokens=settings.eval_max_new_tokens)
        """The evaluation queue (its table sits in the store's file) and its endpoints' server side."""

    @classmethod
    def from_env(cls) -> Board:
        """The store at `CRASHCHAT_DB` (or the user data dir), mirrored to the Hub when configured."""
        settings = BoardSettings.from_env()
        store = Store()
        sync = HubSync.from_env(store)
        if sync is not None:
            print(f"leaderboard: {sync.pull()}", file=sys.stderr)
            print(f"leaderboard: {sync.start()}", file=sys.stderr)
        return cls(store, sync=sync, settings=settings)

    # --- data -----------------------------------------------------------------------------------

    def split(self) -> Split:
        with self._split_lock:  # one load (or download) even when several events ask at once
            if self._split is None:
                self._split = load_split(self.split_dir)
            return self._split

    def split_notice(self) -> str:
        return "" if self._split is not None else split_notice(self.split_dir)

    def _cached(self, key: tuple, build):
        """`build()` once per store generation (any write, from any process, expires it)."""
        generation = self.store.generation()
        with self._cache_lock:
            if self._cache_generation != generation:
                self._cache, self._cache_generation = {}, generation
            if key in self._cache:
                return self._cache[key]
        value = build()
        with self._cache_lock:
            if self._cache_generation == generation:
                if len(self._cache) > 256:  # searches are free text: keep the cache bounded
                    self._cache.clear()
                self._cache[key] = value
        return value

    def warm(self) -> None:
        """Parse every row and build the default views once (run in the background at start)."""
        for protocol in table.PROTOCOLS:
            self.api_rows(protocol)
            self.view(protocol)

    def clear_cache(self) -> None:
        """Forget every cached view and parsed row (benchmarks time the uncached path this way)."""
        with self._cache_lock:
            self._cache, self._cache_generation = {}, None
        with self._compact_lock:
            self._compact.clear()
            self._full.clear()
        self.store.clear_cache()

    def _verified(self, protocol: str) -> list[table.Row]:
        """Every visible stored row's compact Row; only new or changed rows are read and parsed.

        One thread builds at a time (the others wait and reuse its work: at start the warm-up and
        the first visitors ask together), and rows are read 500 at a time, so parsing 10,000 rows
        never holds 10,000 parsed summaries at once.
        """
        stored = self.store.rows()
        with self._build_lock:
            with self._compact_lock:
                known = dict(self._compact)
            stale = [s for s in stored if s.id not in known or known[s.id][0] is not s]
            for k in range(0, len(stale), 500):
                chunk = stale[k:k + 500]
                summaries = self.store.summaries(s.id for s in chunk)
                for s in chunk:
                    summary = summaries[s.id]
                    record = {**s.as_dict(), "summary": summary}
                    paper = table.verified_row(record, "paper", full=False)
                    # A complete row's two protocols are one set of numbers: one Row's metrics serve both.
                    strict = (dataclasses.replace(paper, protocol="strict")
                              if summary["protocols"].get("strict") == SAME
                              else table.verified_row(record, "strict", full=False))
                    known[s.id] = (s, {"paper": paper, "strict": strict})
            if stale or len(known) != len(stored):
                alive = {s.id for s in stored}
                known = {i: v for i, v in known.items() if i in alive}
                with self._compact_lock:
                    self._compact = known
        return [known[s.id][1][protocol] for s in stored]

    def rows(self, protocol: str) -> list[table.Row]:
        """Every row shown under `protocol` (compact: the main table's metrics), reported rows first."""
        return self._cached(("rows", protocol), lambda: (list(self._reported) if protocol == "paper" else [])
                            + self._verified(protocol))

    def verified(self, protocol: str = "strict") -> list[table.Row]:
        return [r for r in self.rows(protocol) if r.scored]

    def full(self, rows: list[table.Row]) -> list[table.Row]:
        """The same rows with every metric and their per-source breakdown (read for these rows only)."""
        out, need = [], []
        for r in rows:
            if r.scored:
                need.append(r)
        stored = {s.id: s for s in self.store.rows()} if need else {}
        missing = [r for r in need if (r.row_id, stored[r.row_id].revision, r.protocol) not in self._full]
        if missing:
            summaries = self.store.summaries(r.row_id for r in missing)
            for r in missing:
                s = stored[r.row_id]
                by_source = self.store.result(r.row_id)["protocols"]
                record = {**s.as_dict(), "summary": summaries[r.row_id],
                          "by_source": {p: v.get("by_source", {}) for p, v in by_source.items()}}
                with self._compact_lock:
                    if len(self._full) > 512:
                        self._full.clear()
                    for p in table.PROTOCOLS:
                        self._full[(r.row_id, s.revision, p)] = table.verified_row(record, p)
        for r in rows:
            out.append(r if r.kind == table.REPORTED else self._full[(r.row_id, stored[r.row_id].revision, r.protocol)])
        return out

    def resolve(self, key: str | None) -> str | None:
        """A picker's value as a row key: `verified:N`, `paper:NAME`, or a typed `#N` / `N`."""
        if key is None:
            return None
        text = str(key).strip()
        if text.lstrip("#").isdigit():
            return f"verified:{int(text.lstrip('#'))}"
        return text or None

    def _row(self, key: str | None, protocol: str = "strict") -> table.Row:
        """A row shown now (never a hidden one), under `protocol` (verified rows under any)."""
        key = self.resolve(key)
        if key and key.startswith("verified:"):
            for row in self.verified(protocol if protocol == "strict" else "paper"):
                if row.key == key:
                    return row
        else:
            for row in self.rows(protocol):
                if row.key == key:
                    return row
        raise BoardError(f"no leaderboard row {key!r} (it may have been hidden); refresh the page")

    def submission(self, key: str | None) -> Submission:
        key = self.resolve(key)
        if not key or not str(key).startswith("verified:"):
            raise BoardError("pick a verified row")
        row = self._row(key)  # a hidden row's answers stay hidden, even for a page opened before
        return _stored_submission(self.store, row.row_id, self.split())

    # --- main table -----------------------------------------------------------------------------

    def ordered(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                descending: bool = True) -> list[table.Row]:
        """The rows of a view, in its order (searched over every row)."""
        key = ("ordered", protocol, search or "", sort_by or "", bool(descending))
        return self._cached(key, lambda: table.shown_rows(self.rows(protocol), search or "", sort_by, descending))

    def main_table(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                   descending: bool = True, extra: list[str] | None = None) -> pd.DataFrame:
        """Every row of a view as the table shows it (tests and small boards; the tab pages)."""
        rows = self.ordered(protocol, search, sort_by, descending)
        return pd.DataFrame(table.main_records(rows, extra or ()), columns=table.main_headers(extra or ()))

    def export_csv(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                   descending: bool = True) -> str:
        """The CSV of a view (formula cells neutralised), written for this request: a new file in the
        board's own folder (the latest few are kept), so no other request can take it away."""
        def build() -> str:
            return table.csv_text(table.export_frame(self.ordered(protocol, search, sort_by, descending)))

        text = self._cached(("csv", protocol, search or "", sort_by or "", bool(descending)), build)
        handle, name = tempfile.mkstemp(prefix="export-", suffix=".csv", dir=self._csv_dir)
        folder = Path(name).with_suffix("")
        os.close(handle)
        os.unlink(name)
        folder.mkdir()
        path = folder / f"crashchat_leaderboard_{protocol}.csv"
        path.write_text(text, encoding="utf-8", newline="")
        with self._exports_lock:
            self._exports.append(path)
            while len(self._exports) > 32:  # our own files: Gradio has copied older ones into its cache
                old = self._exports.popleft()
                old.unlink(missing_ok=True)
                old.parent.rmdir()
        return str(path)

    def view(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
             descending: bool = True, extra: list[str] | None = None, page: float | int | None = 1) -> dict:
        """One page of the main table as the Dataframe shows it (verified rows highlighted; an
        empty view says why), with `note` ("rows 1-100 of 10,010") and `page` (clamped)."""
        extra = [e for e in table.EXTRA_CHOICES if e in (extra or [])]
        rows = self.ordered(protocol, search, sort_by, descending)
        pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        number = _whole(page, 1)
        number = min(max(number, 1), pages)

        def build() -> dict:
            shown = rows[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
            headers = table.main_headers(extra)
            if not shown:
                note = table.empty_note(protocol, search)
                return display_value(headers, [[note] + [""] * (len(headers) - 1)], [""])
            return display_value(headers, table.main_records(shown, extra), [r.kind for r in shown])

        key = ("view", protocol, search or "", sort_by or "", bool(descending), tuple(extra), number)
        shown = self._cached(key, build)
        first = (number - 1) * PAGE_SIZE + 1
        note = (f"Rows {first:,}–{min(number * PAGE_SIZE, len(rows)):,} of {len(rows):,} (page {number} of {pages})"
                if rows else "No rows")
        return {"value": shown, "note": note, "page": number, "pages": pages}

    def api_rows(self, protocol: str = "paper", details: bool = False, limit: int | float | None = PAGE_SIZE,
                 offset: int | float | None = 0, kind: str | None = "") -> dict:
        """`/leaderboard`: a page of the rows shown under `protocol` (of one `kind` if given: reported,
        verified or evaluated), in the table's default order, with the total."""
        if protocol not in table.PROTOCOLS:
            raise BoardError(f"protocol must be one of {', '.join(table.PROTOCOLS)}")
        kind = (kind or "").strip() if isinstance(kind, str) else kind
        if kind and kind not in table.KINDS:
            raise BoardError(f"kind must be empty (every row) or one of {', '.join(table.KINDS)}")
        limit = _whole(limit, PAGE_SIZE)
        offset = _whole(offset, 0)
        if not 1 <= limit <= MAX_LIMIT:
            raise BoardError(f"limit: a whole number from 1 to {MAX_LIMIT}")
        if offset < 0:
            raise BoardError("offset: a whole number, 0 or more")

        def build() -> dict:
            rows = self.ordered(protocol, table.with_kind("", kind) if kind else "")
            page = rows[offset:offset + limit]
            return {"total": len(rows), "offset": offset, "limit": limit,
                    "rows": table.api_rows(self.full(page) if details else page, details=bool(details))}

        return self._cached(("api", protocol, bool(details), limit, offset, kind), build)

    def choices(self, protocol: str = "paper") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(rows, verified rows) as (label, key) pairs for pickers: the best `PICKER_ROWS` of each, in
        table order (any other verified row: type `#id`)."""
        def build():
            ordered = self.ordered(protocol)
            every = [(r.display_name, r.key) for r in ordered[:PICKER_ROWS]]
            verified = [(r.display_name, r.key) for r in self.ordered("strict")[:PICKER_ROWS]]
            return every, verified

        return self._cached(("choices", protocol), build)

    def details(self, key: str | None) -> dict | None:
        """Everything known about one verified row: who, verification, coverage, how it was produced."""
        if not key:
            return None
        row = self._row(key)
        stored = self.store.get(row.row_id)
        if stored is None or stored.hidden:
            raise BoardError(f"no leaderboard row {key!r} (it may have been hidden); refresh the page")
        return {
            "row": row.id, "model": row.model, "submitter": row.shown_submitter, "link": row.link,
            "notes": row.notes, "submitted_at": row.submitted_at, "split_sha256": row.split_sha256,
            "scorer_version": row.scorer_version, "answers_sha256": row.answers_sha256,
            "overall": row.overall, "overall_ci95": list(row.overall_ci) if row.overall_ci else None,
            "files": [{"name": n, "sha256": h} for n, h in stored.files],
            "answered": {get_task(t).title: f"{a:,}/{e:,}" + ("" if a >= e else f" {table.PARTIAL}")
                         for t, (a, e) in row.coverage.items()},
            "how_produced": row.how_produced or "not given (no .meta.json was submitted)",
            "provenance": row.provenance,
        }

    # --- per task, per source -------------------------------------------------------------------

    def task_view(self, task_id: str, protocol: str, keys: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The Per-task table (the best `PAGE_SIZE` rows in the task's order) and the chart's data."""
        rows = self.rows(protocol)
        ranked = table.rank_for_task(rows, task_id)[:PAGE_SIZE]
        wanted = {k for k in (self.resolve(k) for k in keys or []) if k is not None}
        picked = [r for r in rows if r.key in wanted]
        return table.task_table(self.full(ranked), task_id), table.bar_frame(self.full(picked), task_id, list(wanted))

    def source_view(self, key: str | None, task_id: str, protocol: str) -> pd.DataFrame:
        if not key:
            return table.source_table(table.Row("", table.VERIFIED, protocol, {}), task_id)
        return table.source_table(self.full([self._row(key, protocol)])[0], task_id)

    # --- compare and failures -------------------------------------------------------------------

    def compare(self, key_a: str | None, key_b: str | None, resamples: int = 1000) -> pd.DataFrame:
        key_a, key_b = self.resolve(key_a), self.resolve(key_b)
        if not key_a or not key_b:
            raise BoardError("pick two verified rows")
        if key_a == key_b:
            raise BoardError("pick two different rows")
        result = scoring.compare(self.submission(key_a), self.submission(key_b), self.split(), n=resamples)
        return table.compare_table(result, self._row(key_a).display_name, self._row(key_b).display_name)

    def failures(self, key: str | None, task_id: str, protocol: str = "strict", limit: int = 20) -> pd.DataFrame:
        items = _item_scores(self.store, self.submission(key), self.split(), self.resolve(key), protocol)
        return table.failures_table(items.get(task_id, []), int(limit))

    # --- submit ---------------------------------------------------------------------------------

    def validation_report(self, paths: list[str] | None,
                          who: identity.Submitter | None = None) -> tuple[pd.DataFrame, str]:
        if not paths:
            return pd.DataFrame(columns=VALIDATION_COLUMNS), "Upload one or more prediction files."
        upload, sub = validate(paths, self.split())
        frame = validation_frame(sub.validation)
        matched = sum(v["matched"] for v in sub.validation.values())
        answered = sum(v["matched"] - v["unparseable"] for v in sub.validation.values())
        expected = sum(v["expected"] for v in sub.validation.values())
        produced = f" How produced: {describe(upload.provenance)}." if upload.provenance else ""
        as_whom = f" You submit as {who.name} ({_via(who)})." if who is not None else ""
        return frame, (f"{len(upload.predictions)} prediction file(s) read: {matched:,} answers match the split "
                       f"{self.split().sha256[:12]}, {answered:,} of the {expected:,} questions answered.{produced}"
                       f"{as_whom} Press Submit to score them and add the row.")

    def submit(self, paths: list[str] | None, model: str, link: str = "", notes: str = "",
               provenance_path: str | None = None, *, who: identity.Submitter | None = None) -> Outcome:
        outcome = submit(self.store, paths or [], model, split=self.split(), submitter=who, link=link or "",
                         notes=notes or "", provenance_path=provenance_path, bootstrap=self.bootstrap)
        if outcome.added and self.sync is not None:
            self.sync.push_soon()
        return outcome

    # --- evaluation requests --------------------------------------------------------------------

    def request_evaluation(self, model_id: str, revision: str | None = "main", frames: str | None = None,
                           *, who: identity.Submitter | None = None) -> dict:
        """Queue a Hub model id for the leaderboard's workers (`EvaluationAPI.request_evaluation`),
        as `who` (default: the local user; on a Space a sign-in is required), within the same
        per-submitter limit as file submissions; a model already queued or evaluated at that commit
        answers with its request and costs nothing."""
        who = who if who is not None else identity.submitter()
        limit = identity.submit_limit()

        def admit() -> None:
            now = identity.utc_now()
            identity.check_rate(self.evaluations.queue.request_times(who.name, now - identity.WINDOW), who,
                                now=now, limit=limit)

        reply = self.evaluations.request_evaluation(model_id, revision or "main", frames or "", submitter=who.name,
                                                    admit=admit)
        if not reply["duplicate"] and self.sync is not None:
            self.sync.push_soon()
        return reply

    def evaluation_frame(self) -> pd.DataFrame:
        """The queue as the Submit tab shows it (newest first; plain text cells)."""
        rows = [[str(r["request_id"]), r["model"], r["revision"], (r["commit"] or "local folder")[:12], r["frames"],
                 r["status"], "" if r["position"] is None else str(r["position"]), r["reason"], r["created_at"],
                 r["started_at"], r["finished_at"], r["worker"], "" if r["row_id"] is None else f"#{r['row_id']}"]
                for r in self.evaluations.evaluation_queue()]
        return pd.DataFrame(rows, columns=QUEUE_COLUMNS)

    def _file_evaluation(self, request: EvaluationRequest, files: list[Path], blocks: dict) -> int:
        """`EvaluationAPI`'s submit: a worker's answers, checked against the request already, scored
        and stored as an `evaluated` row under the Hub id, for the submitter who asked."""
        evaluation = {"request_id": request.id, "model": request.model, "revision": request.revision,
                      "commit": request.commit, "frames": request.frames, **blocks["worker"]}
        who = identity.Submitter(request.submitter or identity.UNRECORDED, "evaluation")
        link = f"https://huggingface.co/{request.model}/tree/{request.commit}" if request.commit else ""
        notes = f"evaluated by the leaderboard (request #{request.id}, frames {request.frames})"
        outcome = submit(self.store, [files[0]], evaluated_name(request.model), split=self.split(), submitter=who,
                         link=link, notes=notes, provenance_path=files[1], bootstrap=self.bootstrap,
                         evaluation=evaluation)
        if outcome.added and self.sync is not None:
            self.sync.push_soon()
        return outcome.row.id

    # --- admin ----------------------------------------------------------------------------------

    def admin(self, token: str | None, action: str | None, row_id: float | int | None) -> str:
        check_admin(token)  # before looking at anything else the caller sent
        if action not in ADMIN_ACTIONS:
            raise BoardError(f"action: one of {', '.join(ADMIN_ACTIONS)}")
        if action == "re-score stale rows":
            lines = rescore(self.store, self.split(), bootstrap=self.bootstrap)
            message = "\n".join(lines) if lines else f"every row is current (scorer {SCORER_VERSION})"
        else:
            if (row_id is None or isinstance(row_id, bool) or not isinstance(row_id, (int, float))
                    or not math.isfinite(row_id) or row_id != int(row_id) or row_id < 1):
                raise BoardError("row #: a positive whole number")
            if action == "delete":
                self.store.delete(int(row_id), admin_token=token)
            else:
                self.store.set_hidden(int(row_id), action == "hide", admin_token=token)
            message = f"row #{int(row_id)}: {action} done"
        if self.sync is not None:
            self.sync.push_soon()
        return message


QUEUE_COLUMNS = ["#", "Model", "Revision", "Commit", "Frames", "Status", "Place", "Reason", "Requested (UTC)",
                 "Started", "Finished", "Worker", "Row"]


def evaluated_name(model: str) -> str:
    """An evaluated row's model name: the Hub id (a local folder, allowed in tests: `local/<folder>`),
    cut to the names' limit."""
    name = model if not Path(model).is_absolute() else f"local/{Path(model).name}"
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"


def _whole(value, default: int) -> int:
    """A whole number from a form or API value (None: `default`); anything else is a `BoardError`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise BoardError(f"{value!r}: a whole number expected")
    return int(value)


def _via(who: identity.Submitter) -> str:
    return {"huggingface": "signed in with Hugging Face", "token": "Hugging Face token",
            "local": "the local user; no sign-in outside a Space"}.get(who.via, who.via)


def display_value(headers: list[str], data: list[list[str]], kinds: list[str]) -> dict:
    """The Dataframe component's value for a main-table page: verified rows highlighted, partial
    cells marked, built directly (a pandas Styler takes ~1 s for 1000 rows)."""
    styling = []
    for cells, kind in zip(data, kinds, strict=True):
        base = VERIFIED_STYLE if kind == table.VERIFIED else EVALUATED_STYLE if kind == table.EVALUATED else ""
        styling.append([f"{base}; {PARTIAL_STYLE}" if isinstance(c, str) and c.endswith(f" {table.PARTIAL}")
                        else base for c in cells])
    return {"headers": headers, "data": data, "metadata": {"display_value": data, "styling": styling}}


def validation_frame(validation: dict) -> pd.DataFrame:
    records = [[get_task(t).title, v["expected"], v["matched"], v["matched"] - v["unparseable"], v["missing"],
                v["unknown"], v["unparseable"]] for t, v in validation.items()]
    return pd.DataFrame(records, columns=VALIDATION_COLUMNS)


def outcome_message(outcome: Outcome) -> str:
    row = outcome.row
    produced = f" How produced: {describe(cast(Provenance, row.provenance))}." if row.provenance else ""
    if outcome.added:
        return (f"Added as row #{row.id} by {row.submitter or 'an unrecorded submitter'} (answers "
                f"{row.answers_sha256[:16]}, scorer {row.scorer_version}).{produced}")
    return (f"These answers are already on the board: the scorer reads them as it reads row #{row.id}, "
            f"submitted {row.submitted_at} as {row.model!r}. No row added.")


def error_line(exc: BaseException) -> str:
    """The one-line message of a user error."""
    return " ".join(str(exc).split())


# Rebuilt submissions and per-item scores are immutable per (database, row id, split):
# AUTOINCREMENT ids are never reused, and answers are never edited.
_subs_cache: dict[tuple, Submission] = {}


def _stored_submission(store: Store, row_id: int, split: Split) -> Submission:
    cache_key = (str(store.path), row_id, split.sha256)
    if cache_key not in _subs_cache:
        if len(_subs_cache) > 8:
            _subs_cache.clear()
        _subs_cache[cache_key] = stored_submission(store, row_id, split)
    return _subs_cache[cache_key]


_items_cache: dict[tuple, dict] = {}


def _item_scores(store: Store, sub: Submission, split: Split, key: str | None, protocol: str) -> dict:
    cache_key = (str(store.path), key, split.sha256, protocol)
    if cache_key not in _items_cache:
        if len(_items_cache) > 16:
            _items_cache.clear()
        _items_cache[cache_key] = scoring.item_scores(sub, split, protocol)
    return _items_cache[cache_key]


def _user_errors(fn, *, shown=html.escape):
    """Turn a user mistake into one line in a toast (gr.Error), HTML-escaped (`shown`), never a
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise gr.Error(shown(error_line(exc)), print_exception=False) from None

    return wrapper


def _paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def login_configured() -> bool:
    """Sign in with Hugging Face works here: a Space whose README front matter says `hf_oauth:
    true` (the Space then sets `OAUTH_CLIENT_ID`; without it Gradio's login route cannot start)."""
    return gr.utils.get_space() is not None and bool(os.environ.get("OAUTH_CLIENT_ID"))


def who_submits(profile: gr.OAuthProfile | None, token: gr.OAuthToken | None = None) -> identity.Submitter:
    """The submitter of a Gradio event: the signed-in user, or the owner of an API client's token."""
    return identity.submitter(getattr(profile, "username", None) if profile is not None else None,
                              token.token if token is not None else None)


# --- the tab: one builder per section, wired together by `build` -------------------------------

# Keyword arguments spread into event listeners (`**_PRIVATE`): typed `Any` as each listener
# parameter has its own type.
_PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def _queue(kind: str) -> dict[str, Any]:
    name, limit = QUEUES[kind]
    return {"concurrency_id": name, "concurrency_limit": limit}


@dataclass
class _TableSection:
    protocol: gr.Radio
    search: gr.Textbox
    sort_by: gr.Dropdown
    descending: gr.Checkbox
    extra: gr.CheckboxGroup
    page: gr.Number
    note: gr.Textbox
    main: gr.Dataframe
    download: gr.DownloadButton
    details_row: gr.Dropdown

    @property
    def view(self) -> list:
        """The inputs of a table view (protocol, search, sort, direction, columns, page)."""
        return [self.protocol, self.search, self.sort_by, self.descending, self.extra, self.page]

    @property
    def outputs(self) -> list:
        return [self.main, self.note, self.page]


def _view_outputs(board: Board, proto: str, query: str, sort: str | None, desc: bool, extra: list[str],
                  page: float | int | None) -> tuple:
    shown = board.view(proto, query, sort, desc, extra, page)
    headers = shown["value"]["headers"]
    return (gr.update(value=shown["value"], column_widths=column_widths(headers)), shown["note"], shown["page"])


def _main_table_section(board: Board) -> _TableSection:
    """The Table tab: protocol, search, sort, column picker, a page of the main table, its CSV,
    one row's details."""
    with gr.Tab("Table", id="board-table"):
        gr.Markdown(table.OVERALL_TEXT)
        with gr.Row():
            protocol = gr.Radio(list(table.PROTOCOLS), value="paper", label="Protocol", scale=1,
                                elem_id="board-protocol")
            search = gr.Textbox(label="Search", placeholder="model, submitter, kind, paper table, notes…", scale=2)
            sort_by = gr.Dropdown([c.label for c in table.main_columns()], value=table.DEFAULT_SORT.label,
                                  label="Sort by", scale=2)
            descending = gr.Checkbox(value=True, label="Descending", scale=1)
            show = gr.Radio(["all", *table.KINDS], value="all", label="Show", scale=2, elem_id="board-show")
        with gr.Accordion("More columns (BLEU, BERTScore, kind, how produced, split, scorer, time, hash, "
                          "link, notes)", open=False):
            extra = gr.CheckboxGroup(list(table.EXTRA_CHOICES), value=[], show_label=False,
                                     elem_id="board-columns")
        headers = table.main_headers()
        main = gr.Dataframe(datatype="str", interactive=False, wrap=True, column_widths=column_widths(headers),
                            pinned_columns=1, max_height=640, elem_id="board-main",
                            label="Leaderboard", show_label=False, buttons=["fullscreen"])
        with gr.Row():
            previous = gr.Button("◀ Previous", size="sm", scale=0, min_width=110)
            page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=0, min_width=90,
                             elem_id="board-page")
            following = gr.Button("Next ▶", size="sm", scale=0, min_width=110)
            note = gr.Textbox(show_label=False, interactive=False, container=False, scale=3, elem_id="board-page-note")
            download = gr.DownloadButton("Download CSV of this view", variant="secondary", scale=1)
        gr.Markdown(table.FOOTNOTE)
        with gr.Accordion("Details of a verified row (who, how it was produced, files, coverage)", open=False):
            details_row = gr.Dropdown([], label="Verified row (or type #id)", allow_custom_value=True)
            details = gr.JSON(label="Row details", elem_id="board-details")
    section = _TableSection(protocol, search, sort_by, descending, extra, page, note, main, download, details_row)
    read = {**_queue("read"), **_PRIVATE}

    def first_page(proto, query, sort, desc, cols, _page):
        return _view_outputs(board, proto, query, sort, desc, cols, 1)

    def this_page(proto, query, sort, desc, cols, number):
        return _view_outputs(board, proto, query, sort, desc, cols, number)

    def csv(proto, query, sort, desc):
        return board.export_csv(proto, query, sort, desc)

    def step(by: int):
        def go(proto, query, sort, desc, cols, number):
            return _view_outputs(board, proto, query, sort, desc, cols, _whole(number, 1) + by)
        return go

    def with_csv(fn):
        # The CSV file is made in the same event as the page it belongs to: two views in flight
        # at once (a protocol switch, then a search) can finish in either order, and a file set
        # by a separate follow-up event could then belong to the other view.
        def both(proto, query, sort, desc, cols, number):
            return (*fn(proto, query, sort, desc, cols, number), csv(proto, query, sort, desc))
        return both

    # A new search, order, protocol or column set starts at page 1; the CSV follows each view.
    for trigger, fn in (([protocol.change, search.change, sort_by.change, descending.change, extra.change],
                         first_page), ([page.submit], this_page), ([previous.click], step(-1)),
                        ([following.click], step(1))):
        gr.on(trigger, _user_errors(with_csv(fn)), inputs=section.view, outputs=[*section.outputs, download],
              **read)
    details_row.change(_user_errors(board.details), inputs=details_row, outputs=details, **read)
    # "Show" writes a `kind:` term into the search (which then refreshes the view as any search does).
    show.change(table.with_kind, inputs=[search, show], outputs=search, **read)
    return section


@dataclass
class _PerTaskSection:
    picked: gr.Dropdown
    source_row: gr.Dropdown


def _per_task_section(board: Board, protocol: gr.Radio) -> _PerTaskSection:
    """The Per task tab: every metric of one task, a bar chart of picked rows, one row per source."""
    task_choices = [(t.title, t.id) for t in TASKS]
    with gr.Tab("Per task", id="board-task"):
        with gr.Row():
            task = gr.Dropdown(task_choices, value=TASKS[0].id, label="Task")
            picked = gr.Dropdown([], multiselect=True, label="Rows in the chart (or type #id)",
                                 allow_custom_value=True)
        task_df = gr.Dataframe(datatype="str", interactive=False, wrap=True, max_height=480,
                               elem_id="board-task-table",
                               label=f"Every metric of this task (the best {PAGE_SIZE} rows)")
        bars = gr.Plot(label="Bar chart", elem_id="board-bars", format="png")
        gr.Markdown("### Per-source breakdown of one row")
        gr.Markdown(table.SOURCE_NOTE)
        source_row = gr.Dropdown([], label="Verified row (or type #id)", allow_custom_value=True)
        source_df = gr.Dataframe(headers=["Source"], datatype="str", interactive=False,
                                 label="By source dataset", elem_id="board-sources")

    def task_view(task_id: str, proto: str, keys: list[str] | None):
        frame, bar_data = board.task_view(task_id, proto, keys)
        return frame, table.bar_figure(bar_data, get_task(task_id).title)

    gr.on([task.change, picked.change, protocol.change], _user_errors(task_view), inputs=[task, protocol, picked],
          outputs=[task_df, bars], **_queue("read"), **_PRIVATE)
    gr.on([source_row.change, task.change, protocol.change], _user_errors(board.source_view),
          inputs=[source_row, task, protocol], outputs=source_df, **_queue("read"), **_PRIVATE)
    return _PerTaskSection(picked, source_row)


def _compare_section(board: Board) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The Compare tab: a paired bootstrap of two verified rows; returns the two pickers."""
    with gr.Tab("Compare", id="board-compare"):
        gr.Markdown("Paired bootstrap over videos (strict protocol, one headline metric per task): "
                    "which row is better, and is the difference significant at 95%?")
        with gr.Row():
            row_a = gr.Dropdown([], label="Row A (or type #id)", allow_custom_value=True)
            row_b = gr.Dropdown([], label="Row B (or type #id)", allow_custom_value=True)
        compare_btn = gr.Button("Compare")
        compare_df = gr.Dataframe(datatype="str", interactive=False, wrap=True, label="A vs B")
    compare_btn.click(_user_errors(board.compare), inputs=[row_a, row_b], outputs=compare_df, **_queue("heavy"),
                      **_PRIVATE)
    return row_a, row_b


def _failures_section(board: Board) -> gr.Dropdown:
    """The Failures tab: the worst-scored answers of one row; returns its row picker."""
    task_choices = [(t.title, t.id) for t in TASKS]
    with gr.Tab("Failures", id="board-failures-tab"):
        with gr.Row():
            fail_row = gr.Dropdown([], label="Verified row (or type #id)", allow_custom_value=True)
            fail_task = gr.Dropdown(task_choices, value=TASKS[0].id, label="Task")
            fail_protocol = gr.Radio(list(table.PROTOCOLS), value="strict", label="Protocol")
            fail_n = gr.Slider(5, 200, value=20, step=5, label="How many")
        fail_btn = gr.Button("Show the worst answers")
        fail_df = gr.Dataframe(headers=["Video", "Source", "Truth", "Answer", "Parsed", "Score"],
                               datatype="str", interactive=False, wrap=True, max_height=640,
                               column_widths=FAILURE_WIDTHS, elem_id="board-failures",
                               label="Worst answers (lowest per-item score first; long texts cut)")
    fail_btn.click(_user_errors(board.failures), inputs=[fail_row, fail_task, fail_protocol, fail_n],
                   outputs=fail_df, **_queue("heavy"), **_PRIVATE)
    return fail_row


class _Pickers:
    """Every row picker of the tab, refreshed together (after a submission, an admin action, a
    protocol switch)."""

    def __init__(self, board: Board, per_task: _PerTaskSection, compare: tuple[gr.Dropdown, gr.Dropdown],
                 fail_row: gr.Dropdown, details_row: gr.Dropdown) -> None:
        self.board = board
        self.outputs = [per_task.picked, per_task.source_row, *compare, fail_row, details_row]

    def refresh(self, proto: str) -> tuple:
        every, verified = self.board.choices(proto)
        # Chart defaults: the best verified rows complete on the first task, then the paper's rows; six at most.
        ranked = table.rank_for_task(self.board.rows(proto), TASKS[0].id)[:PICKER_ROWS]
        keys = [r.key for r in ranked if r.scored and r.complete(TASKS[0].id)][:3]
        keys += [r.key for r in ranked if r.kind == table.REPORTED]
        first = verified[0][1] if verified else None
        second = verified[1][1] if len(verified) > 1 else None
        return (gr.update(choices=every, value=keys[:6]), gr.update(choices=verified, value=first),
                gr.update(choices=verified, value=first), gr.update(choices=verified, value=second),
                gr.update(choices=verified, value=first), gr.update(choices=verified, value=None))


def _submit_section(board: Board, view: _TableSection, pickers: _Pickers) -> None:
    """The Submit tab (sign-in on a Space, form, files, validation report, status, scorer JSON)
    and the `/submit` API."""
    with gr.Tab("Submit", id="board-submit"):
        if login_configured():
            gr.LoginButton()
        elif identity.on_space():
            gr.Markdown("Submitting from this page needs *Sign in with Hugging Face*, which this Space has not "
                        "turned on (`hf_oauth: true` in its README front matter). API clients can still "
                        "submit with their token: `Client(..., oauth_token=...)`.")
        gr.Markdown(SUBMIT_HELP + "\nOr let the leaderboard run a Hub model itself: **Evaluate a model**, "
                    "below the file form.")
        with gr.Row():
            model = gr.Textbox(label="Model name (1–80 printable characters)", max_lines=1,
                               elem_id="board-model")
            link = gr.Textbox(label="Link (optional, https://…)", max_lines=1)
        notes = gr.Textbox(label="Notes (optional)", lines=2)
        files = gr.File(file_count="multiple", file_types=[".json", ".jsonl", ".csv"], type="filepath",
                        label="Prediction files (and optionally predict's .meta.json)", elem_id="board-files")
        status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="board-status")
        validation_df = gr.Dataframe(headers=VALIDATION_COLUMNS, datatype="str", interactive=False,
                                     label="Validation report", elem_id="board-validation")
        submit_btn = gr.Button("Submit", variant="primary", elem_id="board-submit-btn")
        result = gr.JSON(label="Scorer JSON", elem_id="board-result")
        # API-only inputs (`/submit`'s provenance).
        provenance_file = gr.File(file_types=[".json"], type="filepath", visible=False,
                                  label="Provenance (.meta.json)")
        api_submit_btn = gr.Button(visible=False)
        _evaluate_section(board)

    # Every message stays in the Status box (toasts fade, and would render HTML). A new upload
    # clears the last result; a refused one keeps the files in the box (nothing is deleted).
    def on_upload(uploaded, profile: gr.OAuthProfile | None):
        paths = _paths(uploaded)
        try:
            who = who_submits(profile) if paths else None
        except identity.IdentityError as exc:
            who = None
            sign_in = f" Sign in to submit: {error_line(exc)}"
        else:
            sign_in = ""
        try:
            frame, message = board.validation_report(paths, who)
            return frame, message + sign_in, None
        except USER_ERRORS as exc:
            return pd.DataFrame(columns=VALIDATION_COLUMNS), f"Error: {error_line(exc)}", None

    gr.on([files.upload, files.delete, files.clear], on_upload, inputs=files,
          outputs=[validation_df, status, result], **_queue("validate"), **_PRIVATE)

    keep = [gr.update()] * (2 + len(view.outputs) + len(pickers.outputs))

    def ui_submit(uploaded, name: str, url: str, text: str, proto: str, query: str, sort: str, desc: bool,
                  cols: list[str], number, profile: gr.OAuthProfile | None):
        paths = _paths(uploaded)
        try:
            check_entry(name, url or "", text or "")  # a form mistake says so before the files are read
            outcome = board.submit(paths, name, url or "", text or "", who=who_submits(profile))
        except USER_ERRORS as exc:
            return (f"Error: {error_line(exc)}", gr.update(), None, *keep)
        # Added or already there: the box is emptied for the next submission (a refusal keeps it).
        return (outcome_message(outcome), validation_frame(outcome.result["validation"]), outcome.result,
                None, gr.update(), *_view_outputs(board, proto, query, sort, desc, cols, number),
                *pickers.refresh(proto))

    submit_btn.click(ui_submit, inputs=[files, model, link, notes, *view.view],
                     outputs=[status, validation_df, result, files, view.download, *view.outputs, *pickers.outputs],
                     **_queue("submit"), **_PRIVATE).then(
        _user_errors(lambda p, q, s, d: board.export_csv(p, q, s, d)), inputs=view.view[:4],
        outputs=view.download, **_queue("read"), **_PRIVATE)

    # Defaults of None make link, notes and provenance optional for gradio_client.
    def do_submit(files, model: str, link: str | None = None, notes: str | None = None,
                  provenance: str | None = None, profile: gr.OAuthProfile | None = None,
                  oauth_token: gr.OAuthToken | None = None) -> dict:
        """Score prediction files and add them to the leaderboard; returns the scorer's JSON.

        `provenance`: the `.meta.json` file `python -m crashchat predict` writes (optional; a file
        among `files` whose name ends in `.meta.json` is taken as it too). On a Space, the caller
        is the signed-in user or the owner of `Client(..., oauth_token=...)`.
        """
        paths, meta = _paths(files), _paths(provenance)
        try:
            who = who_submits(profile, oauth_token)
            return board.submit(paths, model, link or "", notes or "", meta[0] if meta else None, who=who).result
        except USER_ERRORS as exc:
            raise gr.Error(error_line(exc), print_exception=False) from None

    api_submit_btn.click(do_submit, inputs=[files, model, link, notes, provenance_file], outputs=result,
                         api_name="submit", **_queue("submit"))


EVALUATE_HELP = """### Evaluate a model

Instead of uploading answers, ask the leaderboard to run a model itself: give a Hub model id (an
image-text-to-text model with safetensors weights that transformers runs without remote code), a
revision (a branch, tag or commit; resolved to a commit now, so the row says exactly what ran) and
the frame policy. A leaderboard worker on a GPU machine runs `crashchat predict` on every clip of
the test split and sends the answers back; the row appears with kind **evaluated** (highlighted
green; *Show: evaluated* in the Table tab lists only those), apart from self-reported **verified**
rows. The same model, commit and frame policy asked again points at the existing request. Each
request counts towards your daily limit as a submission does.
"""


def _request_message(reply: dict) -> str:
    at = (f" at commit {reply['commit'][:12]} (revision {reply['revision']})" if reply.get("commit")
          else " (a local folder)")
    what = f"{reply['model']}{at}, frames {reply['frames']}"
    if reply["duplicate"]:
        return f"Already asked: request #{reply['request_id']} for {what} is {reply['status']}. Nothing new was queued."
    return (f"Queued as request #{reply['request_id']}: {what}. A worker will evaluate it; the queue below shows "
            "its progress and, once finished, its row.")


def _evaluate_section(board: Board) -> None:
    """*Evaluate a model* (inside the Submit tab): the request form, the queue, and the endpoints
    `/request_evaluation` and `/evaluation_queue` (public) and the workers' four (token-checked)."""
    gr.Markdown(EVALUATE_HELP)
    with gr.Row():
        model_id = gr.Textbox(label="Hub model id (owner/name)", max_lines=1, scale=3, elem_id="board-eval-model",
                              placeholder="e.g. Qwen/Qwen2.5-VL-7B-Instruct")
        revision = gr.Textbox(label="Revision", value="main", max_lines=1, scale=1, elem_id="board-eval-revision")
        frames = gr.Dropdown([(f"{name}: {policy.about}", name) for name, policy in REQUEST_FRAMES.items()],
                             value=DEFAULT_FRAMES, label="Frame policy", scale=3, elem_id="board-eval-frames")
    ask = gr.Button("Request evaluation", variant="primary", elem_id="board-eval-btn")
    status = gr.Textbox(label="Request status", interactive=False, lines=1, elem_id="board-eval-status")
    with gr.Row():
        gr.Markdown("**Evaluation queue** (newest first; *Place*: position among pending requests)")
        refresh = gr.Button("Refresh the queue", size="sm", scale=0, min_width=160)
    queue_df = gr.Dataframe(headers=QUEUE_COLUMNS, datatype="str", interactive=False, wrap=True,
                            max_height=420, elem_id="board-eval-queue", show_label=False)
    # API-only inputs: plain text, so a bad frame policy gets our one-line refusal, not a choices error.
    api_model, api_revision, api_frames = (gr.Textbox(visible=False) for _ in range(3))
    api_request_btn, api_finish_btn = gr.Button(visible=False), gr.Button(visible=False)
    reply_json = gr.JSON(visible=False)
    worker_token, request_id, lease = gr.Textbox(visible=False), gr.Number(visible=False), gr.Textbox(visible=False)
    answers = gr.File(file_count="multiple", type="filepath", visible=False)
    worker_block = gr.JSON(visible=False)

    def ui_request(model: str, rev: str, policy: str, profile: gr.OAuthProfile | None):
        try:
            reply = board.request_evaluation(model, rev, policy, who=who_submits(profile))
        except USER_ERRORS as exc:
            return f"Error: {error_line(exc)}", gr.update()
        return _request_message(reply), board.evaluation_frame()

    ask.click(ui_request, inputs=[model_id, revision, frames], outputs=[status, queue_df], **_queue("worker"),
              **_PRIVATE)
    for trigger in (refresh.click, None):  # None: on page load
        gr.on(trigger, _user_errors(board.evaluation_frame), outputs=queue_df, **_queue("read"), **_PRIVATE)

    def request_evaluation(model_id: str, revision: str | None = "main", frames: str | None = DEFAULT_FRAMES,
                           profile: gr.OAuthProfile | None = None,
                           oauth_token: gr.OAuthToken | None = None) -> dict:
        """Queue a Hub model id for evaluation: `{"request_id", "status", "duplicate", "model",
        "revision", "commit", "frames"}`. On a Space, as the signed-in user or the owner of
        `Client(..., oauth_token=...)`."""
        return board.request_evaluation(model_id, revision, frames, who=who_submits(profile, oauth_token))

    api_request_btn.click(_api_errors(request_evaluation), inputs=[api_model, api_revision, api_frames],
                          outputs=reply_json, api_name="request_evaluation", **_queue("worker"))

    def evaluation_queue() -> list[dict]:
        """The requests, newest first: `request_id`, `model`, `revision`, `commit`, `frames`,
        `status` (pending, running, finished, failed), `reason`, times, `worker`, `attempts`,
        `row_id` and, for pending ones, `position`."""
        return board.evaluations.evaluation_queue()

    gr.api(_api_errors(evaluation_queue), api_name="evaluation_queue", **_queue("worker"))
    api = board.evaluations

    def synced(reply: dict) -> dict:
        """A change of a request's status goes to the Hub mirror with the rows (renewals do not)."""
        if reply and board.sync is not None:
            board.sync.push_soon()
        return reply

    def claim_evaluation(token: str, worker: str) -> dict:
        """(worker token) The oldest pending request, now held by `worker` with a lease; `{}` when none."""
        return synced(api.claim_evaluation(token, worker))

    def renew_evaluation(token: str, request_id: float, lease: str) -> dict:
        """(worker token) Extend a held request's lease."""
        return api.renew_evaluation(token, request_id, lease)

    def fail_evaluation(token: str, request_id: float, lease: str, reason: str) -> dict:
        """(worker token) Mark a held request failed with a one-line reason."""
        return synced(api.fail_evaluation(token, request_id, lease, reason))

    for fn in (claim_evaluation, renew_evaluation, fail_evaluation):
        gr.api(_api_errors(fn), api_name=fn.__name__, **_queue("worker"))

    def finish_evaluation(token: str, number: float, held: str, files, block: dict) -> dict:
        """(worker token) The answers and their `.meta.json` for a held request, and the worker's
        block: stored as an `evaluated` row; the request is finished with that row."""
        return synced(api.finish_evaluation(token, number, held, _paths(files), block))

    api_finish_btn.click(_api_errors(finish_evaluation), inputs=[worker_token, request_id, lease, answers,
                                                                 worker_block],
                         outputs=reply_json, api_name="finish_evaluation", **_queue("submit"))


def _api_errors(fn):
    """An API endpoint's user mistakes as one-line `gr.Error`s, not escaped: an API client shows
    the text as is (no toast renders it)."""
    return _user_errors(fn, shown=str)


def _api_section(board: Board, protocol: gr.Radio) -> None:
    """`/leaderboard` and `/export_csv`: the board for programs."""
    def leaderboard(protocol: str = "paper", details: bool = False, limit: float = PAGE_SIZE,
                    offset: float = 0, kind: str = "") -> dict:
        """A page of the rows shown under `protocol` (paper: reported + scored here; strict: scored
        here only), in the table's default order (the overall score): `{"total", "offset", "limit",
        "rows"}`. `kind`: only `reported`, `verified` (self-reported answers) or `evaluated` (answers
        the leaderboard's worker produced; each such row has `evaluation`: request, worker, GPU,
        code version). Each row has `overall`, `submitter`, `kind`, `complete`, `answered` and
        `coverage`; `details=True` adds the 95% intervals, every known metric and the provenance."""
        try:
            return board.api_rows(protocol, bool(details), limit, offset, kind)
        except BoardError as exc:
            raise gr.Error(error_line(exc), print_exception=False) from None

    gr.api(leaderboard, api_name="leaderboard", **_queue("api"))

    def export_csv(protocol: str = "paper") -> str:
        """The CSV file of the table's default view under `protocol` (formula cells neutralised)."""
        if protocol not in table.PROTOCOLS:
            raise gr.Error(f"protocol must be one of {', '.join(table.PROTOCOLS)}", print_exception=False)
        return board.export_csv(protocol)

    export_file = gr.File(visible=False)
    export_btn = gr.Button(visible=False)
    export_btn.click(export_csv, inputs=protocol, outputs=export_file, api_name="export_csv", **_queue("api"))


def _admin_section(board: Board, view: _TableSection, pickers: _Pickers) -> None:
    """The Admin tab: hide, unhide, delete a row, re-score stale rows (needs the admin token)."""
    with gr.Tab("Admin", id="board-admin"):
        gr.Markdown("Hide, show or delete a row, or re-score rows scored by another scorer version. "
                    "Needs `CRASHCHAT_ADMIN_TOKEN`.")
        with gr.Row():
            token = gr.Textbox(label="Admin token", type="password", max_lines=1)
            action = gr.Radio(list(ADMIN_ACTIONS), value="hide", label="Action")
            row_id = gr.Number(label="Row #", precision=0)
        admin_btn = gr.Button("Apply")
        admin_status = gr.Textbox(label="Result", interactive=False)

    def do_admin(secret: str, act: str, number, proto: str, query: str, sort: str, desc: bool, cols, page):
        message = board.admin(secret, act, number)
        return (message, *_view_outputs(board, proto, query, sort, desc, cols, page), *pickers.refresh(proto))

    admin_btn.click(_user_errors(do_admin), inputs=[token, action, row_id, *view.view],
                    outputs=[admin_status, *view.outputs, *pickers.outputs], **_queue("heavy"), **_PRIVATE)


def build(board: Board | None = None) -> Board:
    """Lay out the tab inside the current Blocks context; returns the `Board` behind it."""
    board = board if board is not None else Board.from_env()
    threading.Thread(target=board.warm, name="crashchat-board-warm", daemon=True).start()
    gr.HTML(f"<style>{CSS}</style>", padding=False)
    notice = gr.Textbox(label="Test split", interactive=False, visible=False, elem_id="board-split-notice")
    gr.Markdown(INTRO)
    with gr.Tabs():
        view = _main_table_section(board)
        per_task = _per_task_section(board, view.protocol)
        compare = _compare_section(board)
        fail_row = _failures_section(board)
        pickers = _Pickers(board, per_task, compare, fail_row, view.details_row)
        _submit_section(board, view, pickers)
        _admin_section(board, view, pickers)
    _api_section(board, view.protocol)
    read = {**_queue("read"), **_PRIVATE}

    def on_load():
        text = board.split_notice()
        return (*_view_outputs(board, "paper", "", None, True, [], 1), gr.update(value=text, visible=bool(text)))

    # No inputs: on page load only (the view's own events follow its controls).
    gr.on(None, _user_errors(on_load), outputs=[*view.outputs, notice], **read).then(
        _user_errors(lambda: board.export_csv("paper")), outputs=view.download, **read)
    gr.on(None, _user_errors(lambda: pickers.refresh("paper")), outputs=pickers.outputs, **read)
    view.protocol.change(_user_errors(pickers.refresh), inputs=[view.protocol], outputs=pickers.outputs, **read)
    return board
