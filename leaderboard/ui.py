"""The leaderboard tab: the paper's reported rows beside verified submissions, scored here.

`app.py` calls `build()` inside its "Leaderboard" tab. All logic lives in `Board` (plain
methods over `store`, `table` and `scoring`, testable without a browser); `build()` only lays
out Gradio components and wires them to those methods.

Named API endpoints (usable from `gradio_client`):
- `/submit` (files, model, link, notes, provenance=None) -> the scorer's JSON plus a
  `leaderboard` block;
- `/leaderboard` (protocol = "paper", details = False) -> a list of row dicts (model, kind,
  coverage, headline metrics; with `details` also intervals, every metric and the provenance),
  in the table's default order;
- `/export_csv` (protocol = "paper") -> the CSV file of the table's default view.

User text (model names, notes, links, file contents) is only ever shown in components that
render plain text (Dataframe `str` cells, Textbox, JSON, Dropdown labels), never Markdown/HTML;
error toasts are HTML-escaped. Every event runs in Gradio's queue, in concurrency groups
(`QUEUES`), so a burst of one kind of request cannot starve the others.
"""

from __future__ import annotations

import functools
import hashlib
import html
import math
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from crashchat.provenance import ProvenanceError, describe
from crashchat.tasks import TASKS, get_task
from leaderboard import SCORER_VERSION, scoring, table
from leaderboard.hubsync import HubSync
from leaderboard.intake import (
    MAX_FILES,
    MAX_REQUEST_BYTES,
    Outcome,
    SubmitError,
    check_entry,
    rescore,
    stored_submission,
    submit,
    validate,
)
from leaderboard.split import Split, SplitError, load_split
from leaderboard.store import RowNotFound, Store, StoreError, check_admin
from leaderboard.submission import MAX_BYTES, MAX_RESPONSE, Submission, SubmissionError


class BoardError(ValueError):
    """A request the tab cannot serve as asked (pick a row, no such row, a bad choice); one line."""


USER_ERRORS = (SubmitError, SubmissionError, ProvenanceError, SplitError, PermissionError, StoreError, RowNotFound,
               BoardError)
"""What a user can cause; anything else (a KeyError included) is a bug and surfaces as one."""

# Concurrency groups: (id, how many at once). Reads are cached and cheap; scoring is CPU-bound.
QUEUES = {
    "read": ("board-read", 2),        # table, pickers, per-task, per-source, details
    "api": ("board-api", 2),          # /leaderboard, /export_csv
    "heavy": ("board-heavy", 1),      # compare, failures, admin (rebuild and re-score answers)
    "validate": ("board-validate", 1),  # reading uploads for the validation report
    "submit": ("board-submit", 1),    # scoring a submission
}

INTRO = """\
**Verified** rows were scored here from submitted answers on the CrashChat test split (their split
fingerprint, protocol, scorer version, time and answers hash are shown). **Reported** rows are the
numbers printed in the paper, unchanged, shown only under the paper protocol. The *strict*
protocol counts every split record once (a missing or unparseable answer counts as wrong); the
*paper* protocol reproduces the published scoring. A row marked *partial* did not answer every
question of a task and ranks below every row that did.
"""

SUBMIT_HELP = f"""\
Upload one or more prediction files: the authors' per-task JSON files, or JSONL/CSV rows with
`video`, `task` and `response` (the raw model text); see the README for the layout and
`python -m crashchat predict` to make them. Add the `.meta.json` file that `predict` writes beside
its output to record how the predictions were produced (optional). At most {MAX_FILES} files,
{MAX_BYTES // 1024 ** 2} MB each and {MAX_REQUEST_BYTES // 1024 ** 2} MB together; an answer at most
{MAX_RESPONSE // 1024} k characters. The validation report appears when the files are uploaded; **Submit**
scores them and adds the row. Answers already scored on this split and scorer version (in any
order, layout or file split) point at the existing row.
"""

VALIDATION_COLUMNS = ["Task", "Expected", "Matched", "Missing", "Unknown", "Unparseable"]
ADMIN_ACTIONS = ("hide", "unhide", "delete", "re-score stale rows")

VERIFIED_STYLE = "background-color: rgba(37, 99, 235, 0.10)"
PARTIAL_STYLE = "color: #9a3412"

# Widths (px) keep headers on word boundaries and make the table wider than the page, so the
# horizontal scrollbar shows; long texts wrap inside their column.
MAIN_WIDTHS = [220, 84] + [150] * len(table.main_columns()) + [150, 220, 70, 260, 70, 170, 150, 200, 260]
FAILURE_WIDTHS = [170, 110, 300, 300, 140, 70]

CSS = """
#board-main th, #board-main th *, #board-task-table th, #board-task-table th * {
  white-space: pre-line !important; word-break: keep-all !important; overflow-wrap: normal !important;
  hyphens: none !important;
}
#board-main .virtual-table-viewport, #board-task-table .virtual-table-viewport,
#board-failures .virtual-table-viewport {
  overflow-x: scroll !important; scrollbar-width: auto !important;
  scrollbar-color: #6b7280 #e5e7eb !important;
}
#board-failures td, #board-failures td * { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
"""


class Board:
    """The tab's state: the store, the optional Hub mirror, the lazily loaded split, view caches."""

    def __init__(self, store: Store | None = None, *, split_dir: str | os.PathLike | None = None,
                 sync: HubSync | None = None, bootstrap: int = 1000) -> None:
        self.store = store if store is not None else Store()
        self.split_dir = split_dir
        self.sync = sync
        self.bootstrap = bootstrap
        self._reported = table.reported_rows()
        self._split: Split | None = None
        self._split_lock = threading.Lock()
        self._csv_dir = Path(tempfile.mkdtemp(prefix="crashchat-board-"))
        self._cache: dict[tuple, object] = {}
        self._cache_generation: int | None = None
        self._cache_lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Board:
        """The store at `CRASHCHAT_DB` (or the user data dir), mirrored to the Hub when configured."""
        store = Store()
        sync = HubSync.from_env(store)
        if sync is not None:
            print(f"leaderboard: {sync.pull()}", file=sys.stderr)
            print(f"leaderboard: {sync.start()}", file=sys.stderr)
        return cls(store, sync=sync)

    # --- data -----------------------------------------------------------------------------------

    def split(self) -> Split:
        with self._split_lock:  # one load (or download) even when several events ask at once
            if self._split is None:
                self._split = load_split(self.split_dir)
            return self._split

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
        self.store.clear_cache()

    def rows(self, protocol: str) -> list[table.Row]:
        return self._cached(("rows", protocol), lambda: table.rows_for(
            protocol, self._reported, [r.as_dict() for r in self.store.rows()]))

    def verified(self, protocol: str = "strict") -> list[table.Row]:
        return [r for r in self.rows(protocol) if r.kind == table.VERIFIED]

    def _row(self, key: str | None, protocol: str = "strict") -> table.Row:
        """A row shown now (never a hidden one), under `protocol` (verified rows under any)."""
        for row in self.rows(protocol) + (self.verified("paper") if protocol == "strict" else []):
            if row.key == key:
                return row
        raise BoardError(f"no leaderboard row {key!r} (it may have been hidden); refresh the page")

    def submission(self, key: str | None) -> Submission:
        if not key or not str(key).startswith("verified:"):
            raise BoardError("pick a verified row")
        row = self._row(key)  # a hidden row's answers stay hidden, even for a page opened before
        return _stored_submission(self.store, row.id, self.split())

    # --- main table -----------------------------------------------------------------------------

    def main_table(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                   descending: bool = True) -> pd.DataFrame:
        key = ("main", protocol, search or "", sort_by or "", bool(descending))
        return self._cached(key, lambda: table.main_table(self.rows(protocol), search=search or "",
                                                          sort_by=sort_by, descending=descending))

    def export_csv(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                   descending: bool = True) -> str:
        """The CSV of the current view (formula cells neutralised); one file per distinct content."""
        def build() -> str:
            frame = table.export_frame(self.rows(protocol), search=search or "", sort_by=sort_by,
                                       descending=descending)
            text = table.csv_text(frame)
            folder = self._csv_dir / hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
            path = folder / f"crashchat_leaderboard_{protocol}.csv"
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8", newline="")
            return str(path)

        return self._cached(("csv", protocol, search or "", sort_by or "", bool(descending)), build)

    def view(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
             descending: bool = True) -> tuple[dict, str]:
        """The main table as the Dataframe shows it (verified rows highlighted; an empty view says
        why) and the CSV of exactly those rows (the download button's file)."""
        def build() -> dict:
            frame = self.main_table(protocol, search, sort_by, descending)
            if frame.empty:
                note = table.EMPTY_NOTE["strict" if protocol == "strict" and not search else "paper"]
                frame = pd.DataFrame([[note] + [""] * (len(frame.columns) - 1)], columns=frame.columns)
            return display_value(frame)

        shown = self._cached(("view", protocol, search or "", sort_by or "", bool(descending)), build)
        return shown, self.export_csv(protocol, search, sort_by, descending)

    def api_rows(self, protocol: str = "paper", details: bool = False) -> list[dict]:
        """`/leaderboard`: every row shown under `protocol`, in the table's default order."""
        if protocol not in table.PROTOCOLS:
            raise BoardError(f"protocol must be one of {', '.join(table.PROTOCOLS)}")
        return self._cached(("api", protocol, bool(details)), lambda: table.api_rows(
            table.shown_rows(self.rows(protocol)), details=bool(details)))

    def choices(self, protocol: str = "paper") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(all rows, verified rows) as (label, key) pairs for pickers."""
        every = [(r.display_name, r.key) for r in self.rows(protocol)]
        verified = [(r.display_name, r.key) for r in self.verified()]
        return every, verified

    def details(self, key: str | None) -> dict | None:
        """Everything known about one verified row: verification, coverage, how it was produced."""
        if not key:
            return None
        row = self._row(key)
        stored = self.store.get(row.id)
        if stored is None or stored.hidden:
            raise BoardError(f"no leaderboard row {key!r} (it may have been hidden); refresh the page")
        return {
            "row": row.id, "model": row.model, "link": row.link, "notes": row.notes,
            "submitted_at": row.submitted_at, "split_sha256": row.split_sha256,
            "scorer_version": row.scorer_version, "answers_sha256": row.answers_sha256,
            "files": [{"name": n, "sha256": h} for n, h in stored.files],
            "answered": {get_task(t).title: f"{a:,}/{e:,}" + ("" if a >= e else f" {table.PARTIAL}")
                         for t, (a, e) in row.coverage.items()},
            "how_produced": row.how_produced or "not given (no .meta.json was submitted)",
            "provenance": row.provenance,
        }

    # --- per task, per source -------------------------------------------------------------------

    def task_view(self, task_id: str, protocol: str, keys: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = self.rows(protocol)
        return table.task_table(rows, task_id), table.bar_frame(rows, task_id, keys or [])

    def source_view(self, key: str | None, task_id: str, protocol: str) -> pd.DataFrame:
        if not key:
            return table.source_table(table.Row("", table.VERIFIED, protocol, {}), task_id)
        return table.source_table(self._row(key, protocol), task_id)

    # --- compare and failures -------------------------------------------------------------------

    def compare(self, key_a: str | None, key_b: str | None, resamples: int = 1000) -> pd.DataFrame:
        if not key_a or not key_b:
            raise BoardError("pick two verified rows")
        if key_a == key_b:
            raise BoardError("pick two different rows")
        result = scoring.compare(self.submission(key_a), self.submission(key_b), self.split(), n=resamples)
        return table.compare_table(result, self._row(key_a).display_name, self._row(key_b).display_name)

    def failures(self, key: str | None, task_id: str, protocol: str = "strict", limit: int = 20) -> pd.DataFrame:
        items = _item_scores(self.store, self.submission(key), self.split(), key, protocol)
        return table.failures_table(items.get(task_id, []), int(limit))

    # --- submit ---------------------------------------------------------------------------------

    def validation_report(self, paths: list[str] | None) -> tuple[pd.DataFrame, str]:
        if not paths:
            return pd.DataFrame(columns=VALIDATION_COLUMNS), "Upload one or more prediction files."
        upload, sub = validate(paths, self.split())
        frame = validation_frame(sub.validation)
        matched = sum(v["matched"] for v in sub.validation.values())
        produced = f" How produced: {describe(upload.provenance)}." if upload.provenance else ""
        return frame, (f"{len(upload.predictions)} prediction file(s) read: {matched} answers match the split "
                       f"{self.split().sha256[:12]}.{produced} Press Submit to score them and add the row.")

    def submit(self, paths: list[str] | None, model: str, link: str = "", notes: str = "",
               provenance_path: str | None = None) -> Outcome:
        outcome = submit(self.store, paths or [], model, split=self.split(), link=link or "",
                         notes=notes or "", provenance_path=provenance_path, bootstrap=self.bootstrap)
        if outcome.added and self.sync is not None:
            self.sync.push_soon()
        return outcome

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


def display_value(frame: pd.DataFrame) -> dict:
    """The Dataframe component's value for a main table: verified rows highlighted, partial cells
    marked, built directly (a pandas Styler takes ~1 s for 1000 rows)."""
    headers = [str(c) for c in frame.columns]
    data = frame.to_numpy().tolist()
    kind = headers.index("Kind")
    styling = []
    for cells in data:
        base = VERIFIED_STYLE if cells[kind] == table.VERIFIED else ""
        styling.append([f"{base}; {PARTIAL_STYLE}" if isinstance(c, str) and c.endswith(f" {table.PARTIAL}")
                        else base for c in cells])
    return {"headers": headers, "data": data, "metadata": {"display_value": data, "styling": styling}}


def validation_frame(validation: dict) -> pd.DataFrame:
    records = [[get_task(t).title, v["expected"], v["matched"], v["missing"], v["unknown"], v["unparseable"]]
               for t, v in validation.items()]
    return pd.DataFrame(records, columns=VALIDATION_COLUMNS)


def outcome_message(outcome: Outcome) -> str:
    row = outcome.row
    produced = f" How produced: {describe(row.provenance)}." if row.provenance else ""
    if outcome.added:
        return (f"Added as row #{row.id} (answers {row.answers_sha256[:16]}, scorer {row.scorer_version})."
                f"{produced}")
    return (f"These answers were already scored on this split with scorer {row.scorer_version}: "
            f"row #{row.id}, submitted {row.submitted_at} as {row.model!r}. No row added.")


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


def _item_scores(store: Store, sub: Submission, split: Split, key: str, protocol: str) -> dict:
    cache_key = (str(store.path), key, split.sha256, protocol)
    if cache_key not in _items_cache:
        if len(_items_cache) > 16:
            _items_cache.clear()
        _items_cache[cache_key] = scoring.item_scores(sub, split, protocol)
    return _items_cache[cache_key]


def _user_errors(fn):
    """Turn a user mistake into one line in a toast (gr.Error), HTML-escaped, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise gr.Error(html.escape(error_line(exc)), print_exception=False) from None

    return wrapper


def _paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def discard_uploads(paths: list[str]) -> None:
    """Delete uploaded files once processed (only files inside Gradio's upload folder)."""
    root = Path(gr.utils.get_upload_folder()).resolve()
    for p in paths:
        path = Path(p).resolve()
        if root not in path.parents:
            continue
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()  # Gradio keeps each upload in its own folder
        except OSError:
            pass


# --- the tab: one builder per section, wired together by `build` -------------------------------

_PRIVATE = {"api_visibility": "private"}


def _queue(kind: str) -> dict:
    name, limit = QUEUES[kind]
    return {"concurrency_id": name, "concurrency_limit": limit}


@dataclass
class _TableSection:
    protocol: gr.Radio
    search: gr.Textbox
    sort_by: gr.Dropdown
    descending: gr.Checkbox
    main: gr.Dataframe
    download: gr.DownloadButton
    details_row: gr.Dropdown

    @property
    def view(self) -> list:
        """The inputs of a table view (protocol, search, sort, direction)."""
        return [self.protocol, self.search, self.sort_by, self.descending]


def _main_table_section(board: Board) -> _TableSection:
    """The Table tab: protocol, search, sort, the main table, its CSV, one row's details."""
    with gr.Tab("Table", id="board-table"):
        with gr.Row():
            protocol = gr.Radio(list(table.PROTOCOLS), value="paper", label="Protocol", scale=1,
                                elem_id="board-protocol")
            search = gr.Textbox(label="Search", placeholder="model, kind, paper table, notes…", scale=2)
            sort_by = gr.Dropdown([c.label for c in table.main_columns()], value=table.DEFAULT_SORT.label,
                                  label="Sort by", scale=2)
            descending = gr.Checkbox(value=True, label="Descending", scale=1)
        main = gr.Dataframe(datatype="str", interactive=False, wrap=True, column_widths=MAIN_WIDTHS,
                            pinned_columns=1, max_height=640, elem_id="board-main",
                            label="Leaderboard", show_label=False, buttons=["fullscreen"])
        gr.Markdown(table.FOOTNOTE)
        download = gr.DownloadButton("Download CSV of this view", variant="secondary")
        with gr.Accordion("Details of a verified row (how it was produced, files, coverage)", open=False):
            details_row = gr.Dropdown([], label="Verified row")
            details = gr.JSON(label="Row details", elem_id="board-details")
    section = _TableSection(protocol, search, sort_by, descending, main, download, details_row)
    # triggers=None: on page load and whenever one of the inputs changes.
    gr.on(None, _user_errors(board.view), inputs=section.view, outputs=[main, download], **_queue("read"),
          **_PRIVATE)
    details_row.change(_user_errors(board.details), inputs=details_row, outputs=details, **_queue("read"),
                       **_PRIVATE)
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
            picked = gr.Dropdown([], multiselect=True, label="Rows in the chart")
        task_df = gr.Dataframe(datatype="str", interactive=False, wrap=True, max_height=480,
                               elem_id="board-task-table", label="Every metric of this task")
        bars = gr.Plot(label="Bar chart", elem_id="board-bars", format="png")
        gr.Markdown("### Per-source breakdown of one row")
        source_row = gr.Dropdown([], label="Verified row")
        source_df = gr.Dataframe(headers=["Source"], datatype="str", interactive=False,
                                 label="By source dataset")

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
            row_a = gr.Dropdown([], label="Row A")
            row_b = gr.Dropdown([], label="Row B")
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
            fail_row = gr.Dropdown([], label="Verified row")
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
        # Chart defaults: the best verified rows (table order), then the paper's rows; six at most.
        shown = [r.key for r in table.rank_for_task(self.board.rows(proto), TASKS[0].id)]
        keys = [k for k in shown if k.startswith("verified:")][:3] + [k for k in shown if k.startswith("paper:")]
        first = verified[0][1] if verified else None
        second = verified[1][1] if len(verified) > 1 else None
        return (gr.update(choices=every, value=keys[:6]), gr.update(choices=verified, value=first),
                gr.update(choices=verified, value=first), gr.update(choices=verified, value=second),
                gr.update(choices=verified, value=first), gr.update(choices=verified, value=None))


def _submit_section(board: Board, view: _TableSection, pickers: _Pickers) -> None:
    """The Submit tab (form, files, validation report, status, scorer JSON) and the `/submit` API."""
    with gr.Tab("Submit", id="board-submit"):
        gr.Markdown(SUBMIT_HELP)
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
        # API-only inputs and outputs (`/submit`'s provenance).
        provenance_file = gr.File(file_types=[".json"], type="filepath", visible=False,
                                  label="Provenance (.meta.json)")
        api_submit_btn = gr.Button(visible=False)

    # Every message stays in the Status box (toasts fade, and would render HTML).
    def on_upload(uploaded):
        paths = _paths(uploaded)
        try:
            frame, message = board.validation_report(paths)
            return frame, message, gr.update()
        except USER_ERRORS as exc:
            discard_uploads(paths)  # refused: nothing of it is kept
            return pd.DataFrame(columns=VALIDATION_COLUMNS), f"Error: {error_line(exc)}", None

    gr.on([files.upload, files.delete, files.clear], on_upload, inputs=files,
          outputs=[validation_df, status, files], **_queue("validate"), **_PRIVATE)

    unchanged = [gr.update()] * (3 + 2 + len(pickers.outputs))

    def ui_submit(uploaded, name: str, url: str, text: str, proto: str, query: str, sort: str, desc: bool):
        paths = _paths(uploaded)
        try:
            check_entry(name, url or "", text or "")  # a form mistake keeps the uploaded files
        except USER_ERRORS as exc:
            return (f"Error: {error_line(exc)}", *unchanged)
        try:
            outcome = board.submit(paths, name, url or "", text or "")
        except USER_ERRORS as exc:
            return (f"Error: {error_line(exc)}", *unchanged[:2], None, *unchanged[3:])
        finally:
            discard_uploads(paths)
        return (outcome_message(outcome), validation_frame(outcome.result["validation"]), outcome.result, None,
                *board.view(proto, query, sort, desc), *pickers.refresh(proto))

    submit_btn.click(ui_submit, inputs=[files, model, link, notes, *view.view],
                     outputs=[status, validation_df, result, files, view.main, view.download, *pickers.outputs],
                     **_queue("submit"), **_PRIVATE)

    # Defaults of None make link, notes and provenance optional for gradio_client.
    def do_submit(files, model: str, link: str | None = None, notes: str | None = None,
                  provenance: str | None = None) -> dict:
        """Score prediction files and add them to the leaderboard; returns the scorer's JSON.

        `provenance`: the `.meta.json` file `python -m crashchat predict` writes (optional; a file
        among `files` whose name ends in `.meta.json` is taken as it too).
        """
        paths, meta = _paths(files), _paths(provenance)
        try:
            return board.submit(paths, model, link or "", notes or "", meta[0] if meta else None).result
        except USER_ERRORS as exc:
            raise gr.Error(error_line(exc), print_exception=False) from None
        finally:
            discard_uploads(paths + meta)

    api_submit_btn.click(do_submit, inputs=[files, model, link, notes, provenance_file], outputs=result,
                         api_name="submit", **_queue("submit"))


def _api_section(board: Board, protocol: gr.Radio) -> None:
    """`/leaderboard` and `/export_csv`: the board for programs."""
    def leaderboard(protocol: str = "paper", details: bool = False) -> list[dict]:
        """Every row shown under `protocol` (paper: reported + verified; strict: verified only),
        in the table's default order, with `coverage` and `complete`; `details=True` adds the 95%
        intervals, every known metric and the provenance of each row."""
        if protocol not in table.PROTOCOLS:
            raise gr.Error(f"protocol must be one of {', '.join(table.PROTOCOLS)}", print_exception=False)
        return board.api_rows(protocol, bool(details))

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

    def do_admin(secret: str, act: str, number, proto: str, query: str, sort: str, desc: bool):
        message = board.admin(secret, act, number)
        return (message, *board.view(proto, query, sort, desc), *pickers.refresh(proto))

    admin_btn.click(_user_errors(do_admin), inputs=[token, action, row_id, *view.view],
                    outputs=[admin_status, view.main, view.download, *pickers.outputs], **_queue("heavy"),
                    **_PRIVATE)


def build(board: Board | None = None) -> Board:
    """Lay out the tab inside the current Blocks context; returns the `Board` behind it."""
    board = board if board is not None else Board.from_env()
    threading.Thread(target=board.warm, name="crashchat-board-warm", daemon=True).start()
    gr.HTML(f"<style>{CSS}</style>", padding=False)
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
    gr.on(None, _user_errors(pickers.refresh), inputs=[view.protocol], outputs=pickers.outputs, **_queue("read"),
          **_PRIVATE)
    return board
