"""The leaderboard tab: the paper's reported rows beside verified submissions, scored here.

`app.py` calls `build()` inside its "Leaderboard" tab. All logic lives in `Board` (plain
methods over `store`, `table` and `scoring`, testable without a browser); `build()` only lays
out Gradio components and wires them to those methods.

Named API endpoints (usable from `gradio_client`):
- `/submit` (files, model, link, notes) -> the scorer's JSON plus a `leaderboard` block;
- `/leaderboard` (protocol = "paper") -> a list of row dicts (model, kind, headline metrics).

User text (model names, notes, links, file contents) is only ever shown in components that
render plain text (Dataframe `str` cells, Textbox, JSON, Dropdown labels), never Markdown/HTML.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import gradio as gr
import pandas as pd

from crashchat.tasks import TASKS, get_task
from leaderboard import SCORER_VERSION, scoring, table
from leaderboard.split import Split, SplitError, load_split
from leaderboard.store import (HubSync, Outcome, Store, StoreError, SubmitError, check_admin, rescore,
                               stored_submission, submit, validate)
from leaderboard.submission import MAX_BYTES, Submission, SubmissionError

USER_ERRORS = (SubmitError, SubmissionError, SplitError, PermissionError, KeyError, StoreError)

INTRO = """\
**Verified** rows were scored here from submitted answers on the CrashChat test split (their split
fingerprint, protocol, scorer version, time and file hash are shown). **Reported** rows are the
numbers printed in the paper, unchanged, shown only under the paper protocol. The *strict*
protocol counts every split record once (a missing or unparseable answer counts as wrong); the
*paper* protocol reproduces the published scoring.
"""

SUBMIT_HELP = f"""\
Upload one or more prediction files: the authors' per-task JSON files, or JSONL/CSV rows with
`video`, `task` and `response` (the raw model text); see the README for the layout and
`python -m crashchat predict` to make them. Each file at most {MAX_BYTES // 1024 ** 2} MB.
The validation report appears when the files are uploaded; **Submit** scores them and adds the row.
The same files already scored on this split and scorer version point at the existing row.
"""

VALIDATION_COLUMNS = ["Task", "Expected", "Matched", "Missing", "Unknown", "Unparseable"]


class Board:
    """The tab's state: the store, the optional Hub mirror, the lazily loaded split."""

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

    @classmethod
    def from_env(cls) -> Board:
        """The store at `CRASHCHAT_DB` (or the user data dir), mirrored to the Hub when configured."""
        store = Store()
        sync = HubSync.from_env(store)
        if sync is not None:
            print(f"leaderboard: {sync.pull()}", file=sys.stderr)
        return cls(store, sync=sync)

    # --- data -----------------------------------------------------------------------------------

    def split(self) -> Split:
        with self._split_lock:  # one load (or download) even when several events ask at once
            if self._split is None:
                self._split = load_split(self.split_dir)
            return self._split

    def rows(self, protocol: str) -> list[table.Row]:
        return table.rows_for(protocol, self._reported, [r.as_dict() for r in self.store.rows()])

    def verified(self, protocol: str = "strict") -> list[table.Row]:
        return table.rows_for(protocol, [], [r.as_dict() for r in self.store.rows()])

    def _row(self, key: str | None, protocol: str) -> table.Row:
        for row in self.rows(protocol) + (self.verified("paper") if protocol == "strict" else []):
            if row.key == key:
                return row
        raise KeyError(f"no leaderboard row {key!r} (it may have been hidden); refresh the page")

    def submission(self, key: str | None) -> Submission:
        if not key or not str(key).startswith("verified:"):
            raise KeyError("pick a verified row")
        return _stored_submission(self.store, int(str(key).split(":", 1)[1]), self.split())

    # --- main table -----------------------------------------------------------------------------

    def main_table(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                   descending: bool = True) -> pd.DataFrame:
        return table.main_table(self.rows(protocol), search=search or "", sort_by=sort_by, descending=descending)

    def export_csv(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
                   descending: bool = True) -> str:
        """The CSV of the current view; one file per distinct content (views repeat, files do not pile up)."""
        frame = table.export_frame(self.rows(protocol), search=search or "", sort_by=sort_by,
                                   descending=descending)
        text = frame.to_csv(index=False)
        folder = self._csv_dir / hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        path = folder / f"crashchat_leaderboard_{protocol}.csv"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return str(path)

    def view(self, protocol: str = "paper", search: str = "", sort_by: str | None = None,
             descending: bool = True) -> tuple[pd.DataFrame, str]:
        """The main table and the CSV of exactly those rows (the download button's file)."""
        return (self.main_table(protocol, search, sort_by, descending),
                self.export_csv(protocol, search, sort_by, descending))

    def api_rows(self, protocol: str = "paper") -> list[dict]:
        return table.api_rows(self.rows(protocol))

    def choices(self, protocol: str = "paper") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(all rows, verified rows) as (label, key) pairs for pickers."""
        every = [(r.display_name, r.key) for r in self.rows(protocol)]
        verified = [(r.display_name, r.key) for r in self.verified()]
        return every, verified

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
            raise KeyError("pick two verified rows")
        if key_a == key_b:
            raise KeyError("pick two different rows")
        result = scoring.compare(self.submission(key_a), self.submission(key_b), self.split(), n=resamples)
        return table.compare_table(result, self._row(key_a, "strict").display_name,
                                   self._row(key_b, "strict").display_name)

    def failures(self, key: str | None, task_id: str, protocol: str = "strict", limit: int = 20) -> pd.DataFrame:
        items = _item_scores(self.store, self.submission(key), self.split(), key, protocol)
        return table.failures_table(items.get(task_id, []), int(limit))

    # --- submit ---------------------------------------------------------------------------------

    def validation_report(self, paths: list[str] | None) -> tuple[pd.DataFrame, str]:
        if not paths:
            return pd.DataFrame(columns=VALIDATION_COLUMNS), "Upload one or more prediction files."
        sub = validate(paths, self.split())
        frame = validation_frame(sub.validation)
        matched = sum(v["matched"] for v in sub.validation.values())
        return frame, (f"{len(paths)} file(s) read: {matched} answers match the split "
                       f"{self.split().sha256[:12]}. Press Submit to score them and add the row.")

    def submit(self, paths: list[str] | None, model: str, link: str = "", notes: str = "") -> Outcome:
        outcome = submit(self.store, paths or [], model, split=self.split(), link=link or "",
                         notes=notes or "", bootstrap=self.bootstrap)
        if outcome.added and self.sync is not None:
            self.sync.push_soon()
        return outcome

    # --- admin ----------------------------------------------------------------------------------

    def admin(self, token: str, action: str, row_id: float | int | None) -> str:
        if action == "re-score stale rows":
            check_admin(token)
            lines = rescore(self.store, self.split(), bootstrap=self.bootstrap)
            message = "\n".join(lines) if lines else f"every row is current (scorer {SCORER_VERSION})"
        else:
            if row_id is None:
                raise KeyError("give a row number")
            if action == "delete":
                self.store.delete(int(row_id), admin_token=token)
            else:
                self.store.set_hidden(int(row_id), action == "hide", admin_token=token)
            message = f"row #{int(row_id)}: {action} done"
        if self.sync is not None:
            self.sync.push_soon()
        return message


def validation_frame(validation: dict) -> pd.DataFrame:
    records = [[get_task(t).title, v["expected"], v["matched"], v["missing"], v["unknown"], v["unparseable"]]
               for t, v in validation.items()]
    return pd.DataFrame(records, columns=VALIDATION_COLUMNS)


def outcome_message(outcome: Outcome) -> str:
    row = outcome.row
    if outcome.added:
        return f"Added as row #{row.id} (files {row.files_sha256[:16]}, scorer {row.scorer_version})."
    hidden = " (hidden by an admin)" if row.hidden else ""
    return (f"These files were already scored on this split with scorer {row.scorer_version}: "
            f"row #{row.id}{hidden}, submitted {row.submitted_at} as {row.model!r}. No row added.")


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
    """Turn a user mistake into one line in the UI/API (gr.Error), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise gr.Error(str(message), print_exception=False) from None

    return wrapper


def _paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def build(board: Board | None = None) -> Board:
    """Lay out the tab inside the current Blocks context; returns the `Board` behind it."""
    board = board if board is not None else Board.from_env()
    sort_choices = [c.label for c in table.main_columns()]
    task_choices = [(t.title, t.id) for t in TASKS]

    gr.Markdown(INTRO)
    with gr.Tabs():
        with gr.Tab("Table", id="board-table"):
            with gr.Row():
                protocol = gr.Radio(list(table.PROTOCOLS), value="paper", label="Protocol", scale=1)
                search = gr.Textbox(label="Search", placeholder="model, kind, paper table, notes…", scale=2)
                sort_by = gr.Dropdown(sort_choices, value=sort_choices[0], label="Sort by", scale=2)
                descending = gr.Checkbox(value=True, label="Descending", scale=1)
            main = gr.Dataframe(value=board.main_table(), datatype="str", interactive=False, wrap=True,
                                pinned_columns=1, max_height=640, elem_id="board-main",
                                label="Leaderboard", show_label=False, buttons=["fullscreen"])
            gr.Markdown(table.FOOTNOTE)
            download = gr.DownloadButton("Download CSV of this view", variant="secondary")

        with gr.Tab("Per task", id="board-task"):
            with gr.Row():
                task = gr.Dropdown(task_choices, value=TASKS[0].id, label="Task")
                picked = gr.Dropdown([], multiselect=True, label="Rows in the chart")
            task_df = gr.Dataframe(datatype="str", interactive=False, wrap=True, max_height=480,
                                   label="Every metric of this task")
            bars = gr.BarPlot(x="bar", y="value", color="model", x_title="metric · row", color_title="row",
                              y_title="score (0–1)", x_label_angle=-45, height=440, label="Bar chart",
                              elem_id="board-bars")
            # The plot's own legend is clipped under rotated labels; this one lists the rows as text.
            bar_legend = gr.Dataframe(headers=["Row in the chart"], datatype="str", interactive=False,
                                      label="Chart rows", max_height=240)
            gr.Markdown("### Per-source breakdown of one row")
            source_row = gr.Dropdown([], label="Verified row")
            source_df = gr.Dataframe(headers=["Source"], datatype="str", interactive=False,
                                     label="By source dataset")

        with gr.Tab("Compare", id="board-compare"):
            gr.Markdown("Paired bootstrap over videos (strict protocol, one headline metric per task): "
                        "which row is better, and is the difference significant at 95%?")
            with gr.Row():
                row_a = gr.Dropdown([], label="Row A")
                row_b = gr.Dropdown([], label="Row B")
            compare_btn = gr.Button("Compare")
            compare_df = gr.Dataframe(datatype="str", interactive=False, wrap=True, label="A vs B")

        with gr.Tab("Failures", id="board-failures"):
            with gr.Row():
                fail_row = gr.Dropdown([], label="Verified row")
                fail_task = gr.Dropdown(task_choices, value=TASKS[0].id, label="Task")
                fail_protocol = gr.Radio(list(table.PROTOCOLS), value="strict", label="Protocol")
                fail_n = gr.Slider(5, 200, value=20, step=5, label="How many")
            fail_btn = gr.Button("Show the worst answers")
            fail_df = gr.Dataframe(datatype="str", interactive=False, wrap=True, max_height=640,
                                   label="Worst answers (lowest per-item score first)")

        with gr.Tab("Submit", id="board-submit"):
            gr.Markdown(SUBMIT_HELP)
            with gr.Row():
                model = gr.Textbox(label="Model name (1–80 printable characters)", max_lines=1,
                                   elem_id="board-model")
                link = gr.Textbox(label="Link (optional, https://…)", max_lines=1)
            notes = gr.Textbox(label="Notes (optional)", lines=2)
            files = gr.File(file_count="multiple", file_types=[".json", ".jsonl", ".csv"], type="filepath",
                            label="Prediction files", elem_id="board-files")
            validation_df = gr.Dataframe(headers=VALIDATION_COLUMNS, datatype="str", interactive=False,
                                         label="Validation report", elem_id="board-validation")
            status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="board-status")
            submit_btn = gr.Button("Submit", variant="primary", elem_id="board-submit-btn")
            result = gr.JSON(label="Scorer JSON", elem_id="board-result")

        with gr.Tab("Admin", id="board-admin"):
            gr.Markdown("Hide, show or delete a row, or re-score rows scored by another scorer version. "
                        "Needs `CRASHCHAT_ADMIN_TOKEN`.")
            with gr.Row():
                token = gr.Textbox(label="Admin token", type="password", max_lines=1)
                action = gr.Radio(["hide", "unhide", "delete", "re-score stale rows"], value="hide", label="Action")
                row_id = gr.Number(label="Row #", precision=0)
            admin_btn = gr.Button("Apply")
            admin_status = gr.Textbox(label="Result", interactive=False)

    view = [protocol, search, sort_by, descending]
    pickers = [picked, source_row, row_a, row_b, fail_row]

    def refresh_pickers(proto: str):
        every, verified = board.choices(proto)
        # Chart defaults: the newest verified rows, then the paper's rows, six bars per metric.
        keys = [k for _, k in verified][::-1][:3] + [k for _, k in every if k.startswith("paper:")]
        first = verified[0][1] if verified else None
        return (gr.update(choices=every, value=keys[:6]), gr.update(choices=verified, value=first),
                gr.update(choices=verified, value=first),
                gr.update(choices=verified, value=verified[1][1] if len(verified) > 1 else None),
                gr.update(choices=verified, value=first))

    private = dict(api_visibility="private", queue=False)
    # triggers=None: on page load and whenever one of the inputs changes.
    gr.on(None, board.view, inputs=view, outputs=[main, download], **private)
    gr.on(None, refresh_pickers, inputs=[protocol], outputs=pickers, **private)

    task_inputs = [task, protocol, picked]

    def task_view(task_id: str, proto: str, keys: list[str] | None):
        frame, bar_data = board.task_view(task_id, proto, keys)
        legend = pd.DataFrame({"Row in the chart": list(dict.fromkeys(bar_data["model"]))})
        return frame, gr.BarPlot(value=bar_data, sort=bar_data["bar"].tolist()), legend  # keep metric order

    gr.on([task.change, picked.change, protocol.change], _user_errors(task_view), inputs=task_inputs,
          outputs=[task_df, bars, bar_legend], api_visibility="private")
    gr.on([source_row.change, task.change, protocol.change], _user_errors(board.source_view),
          inputs=[source_row, task, protocol], outputs=source_df, api_visibility="private")
    compare_btn.click(_user_errors(board.compare), inputs=[row_a, row_b], outputs=compare_df,
                      api_visibility="private")
    fail_btn.click(_user_errors(board.failures), inputs=[fail_row, fail_task, fail_protocol, fail_n],
                   outputs=fail_df, api_visibility="private")

    gr.on([files.upload, files.delete, files.clear], _user_errors(lambda f: board.validation_report(_paths(f))),
          inputs=files, outputs=[validation_df, status], api_visibility="private")

    # Defaults of None make link and notes optional for gradio_client.
    def do_submit(files, model: str, link: str | None = None, notes: str | None = None) -> dict:
        """Score prediction files and add them to the leaderboard; returns the scorer's JSON."""
        return board.submit(_paths(files), model, link or "", notes or "").result

    def after_submit(result: dict, proto: str, query: str, sort: str, desc: bool):
        outcome_row = board.store.get(result["leaderboard"]["row_id"])
        message = ("Scored, but the row was deleted meanwhile." if outcome_row is None
                   else outcome_message(Outcome(outcome_row, result["leaderboard"]["added"], result)))
        return (message, validation_frame(result["validation"]), *board.view(proto, query, sort, desc),
                *refresh_pickers(proto))

    submit_btn.click(_user_errors(do_submit), inputs=[files, model, link, notes], outputs=result,
                     api_name="submit", concurrency_limit=1).success(
        after_submit, inputs=[result, *view], outputs=[status, validation_df, main, download, *pickers],
        api_visibility="private")

    def leaderboard(protocol: str = "paper") -> list[dict]:
        """Every row shown under `protocol` (paper: reported + verified; strict: verified only)."""
        if protocol not in table.PROTOCOLS:
            raise gr.Error(f"protocol must be one of {', '.join(table.PROTOCOLS)}", print_exception=False)
        return board.api_rows(protocol)

    gr.api(leaderboard, api_name="leaderboard", concurrency_limit=None)

    admin_btn.click(_user_errors(board.admin), inputs=[token, action, row_id], outputs=admin_status,
                    api_visibility="private").success(
        board.view, inputs=view, outputs=[main, download], api_visibility="private").then(
        refresh_pickers, inputs=[protocol], outputs=pickers, api_visibility="private")
    return board
